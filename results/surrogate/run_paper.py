"""Reproduce the surrogate comparisons of the potential paper's Figures 3, 5 and 8 ((4.5), (4.6), (4.7)).

Usage (from the repository root):

    python results/surrogate/run_paper.py LEARN_DIR_1 LEARN_DIR_2 LEARN_DIR_3 [--set KEY=VALUE ...]

LEARN_DIR_i holds result.json and posterior.nc of a ``bayescg learn`` (or pipeline.learn_model) run of
models/test1-quadratic.toml, models/test2-double-well.toml and models/test3-cosine-series-d01309.toml; ``-`` skips a model.  A directory name ``reference`` uses the model's exact reference
U_k instead (no learning), ``truncation`` the model's surrogate.compare_expression (for (4.7): the
N = 2 truncation) as U_k.  Writes results/surrogate/<model>-<learned|reference>/surrogate.json and
PNG figures.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from bayescg.config import load_model  # noqa: E402
from bayescg.io import write_json  # noqa: E402
from bayescg.surrogate import reference_curves, surrogate_model  # noqa: E402

MODELS = ["models/test1-quadratic.toml", "models/test2-double-well.toml", "models/test3-cosine-series-d01309.toml"]


def main(argv):
    dirs = [a for a in argv if not a.startswith("--set") and "=" not in a]
    sets = [a for a in argv if "=" in a]
    here = Path(__file__).resolve().parent
    for path, src in zip(MODELS, dirs):
        if src == "-":
            continue
        model = load_model(path, sets)
        if src == "reference":
            learned = "reference"
        elif src == "truncation":  # the model's compare_expression given as U_k (no learning)
            learned = reference_curves(model, expression=model.surrogate.compare_expression)
        else:
            learned = json.loads((Path(src) / "result.json").read_text())
            learned["posterior_path"] = str(Path(src) / "posterior.nc")
        res = surrogate_model(model, learned)
        tag = src if src in ("reference", "truncation") else "learned"
        if tag == "learned" and (learned.get("finite_delta_correction") or {}).get("applied"):
            tag += "-corrected"  # the learn stage's finite-delta corrected U_k (bayescg.bias, fixed point)
        out = here / f"{model.name}-{tag}"
        out.mkdir(parents=True, exist_ok=True)
        d = res.to_dict()
        d["learn_source"] = src
        write_json(out / "surrogate.json", d)
        for i, (title, fig) in enumerate(res.figures()):
            fig.savefig(out / f"{i + 1}-{title.split(' (')[0].lower().replace(' ', '-')}.png", dpi=100,
                        bbox_inches="tight")
        s = res.summary()
        print(model.name, json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}),
              "timings", res.timings, "warnings", res.warnings, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
