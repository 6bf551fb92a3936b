"""2D surrogate comparisons ((4.8) 2D quadratic, (4.9) Mueller-Brown): issue 14 item 6.

Usage (from the repository root):

    python results/surrogate/run_2d.py MODEL SRC [--set KEY=VALUE ...]

SRC is a ``bayescg learn`` folder (result.json + posterior.nc: its tensor spline drives the surrogate, with the
calibrated Gamma) or ``reference`` (the model's exact reference U_k as a least-squares tensor spline on
potential.domain).  Writes results/surrogate/<model>-<learned|reference>/: surrogate.json, the five figures and
report-surrogate.html (same content as ``bayescg surrogate``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from bayescg.config import load_model  # noqa: E402
from bayescg.io import run_metadata, write_json  # noqa: E402
from bayescg.report import Report  # noqa: E402
from bayescg.surrogate import surrogate_model  # noqa: E402


def main(argv):
    path, src = argv[0], argv[1]
    sets = [a for a in argv[2:] if "=" in a]
    model = load_model(path, sets)
    if src == "reference":
        learned = "reference"
    else:
        learned = json.loads((Path(src) / "result.json").read_text())
        learned["posterior_path"] = str(Path(src) / "posterior.nc")
    res = surrogate_model(model, learned)
    tag = "reference" if src == "reference" else "learned"
    out = Path(__file__).resolve().parent / f"{model.name}-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    d = res.to_dict()
    d["learn_source"] = src
    d["command"] = "python results/surrogate/run_2d.py " + " ".join(argv)
    write_json(out / "surrogate.json", d)
    rep = Report(f"bayescg surrogate: {model.name}", run_metadata(), subtitle=d["command"])
    rep.add_result("Surrogate dynamics", res, res.summary())
    rep.write(out / "report-surrogate.html")
    for i, (title, fig) in enumerate(res.figures()):
        fig.savefig(out / f"{i + 1}-{title.split(' (')[0].lower().replace(' ', '-')}.png", dpi=90, bbox_inches="tight")
    print(model.name, json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.summary().items()}),
          "timings", res.timings, "warnings", res.warnings, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
