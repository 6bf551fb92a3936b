"""Every shipped model file is valid under the schema, and the paper's files carry the paper's settings."""
from pathlib import Path

import pytest

from bayescg.config import load_model

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.toml"))


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_file_loads(path):
    m = load_model(path)
    assert m.name == path.stem


def test_figure8_model_learns_at_the_N2_scale_and_compares_at_the_papers_gamma():
    m = load_model(Path(MODELS[0]).parent / "test3-cosine-series-d01309.toml")
    assert m.simulation.delta == 0.1309
    assert m.surrogate.delta == 0.1309 and m.surrogate.reference_step == 1e-3
    assert m.surrogate.gamma == 0.5 and m.surrogate.trajectories == 4000 and m.surrogate.time == 50.0
    assert "cos(4*q)/4" in m.potential.reference
