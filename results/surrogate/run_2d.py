"""2D surrogate comparisons ((4.8) 2D quadratic, (4.9) Mueller-Brown): issue 14 item 6.

Usage (from the repository root):

    python results/surrogate/run_2d.py MODEL SRC [KEY=VALUE ...] [--tag=SUFFIX]

SRC is a ``bayescg learn`` folder (result.json + posterior.nc: its tensor spline drives the surrogate, with the
calibrated Gamma) or ``reference`` (the model's exact reference U_k as a least-squares tensor spline on
potential.domain).  Writes results/surrogate/<model>-<learned|reference>[-SUFFIX]/: surrogate.json, the five
figures and report-surrogate.html (same content as ``bayescg surrogate``).  With ``surrogate.init_centres`` (e.g. the
three Mueller-Brown wells) surrogate.json also gets ``well_occupancy``: the fraction of late-time samples (the
figures' random subsample) nearest each centre, full model and surrogate, with the binomial standard error over
the M trajectories sqrt(p (1 - p) / M) (exact when every trajectory stays in one well, conservative otherwise).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from bayescg.config import load_model  # noqa: E402
from bayescg.io import run_metadata, write_json  # noqa: E402
from bayescg.report import Report  # noqa: E402
from bayescg.surrogate import surrogate_model  # noqa: E402


def main(argv):
    path, src = argv[0], argv[1]
    tags = [a.split("=", 1)[1] for a in argv[2:] if a.startswith("--tag=")]
    sets = [a for a in argv[2:] if "=" in a and not a.startswith("--tag=")]
    model = load_model(path, sets)
    if src == "reference":
        learned = "reference"
    else:
        learned = json.loads((Path(src) / "result.json").read_text())
        learned["posterior_path"] = str(Path(src) / "posterior.nc")
    res = surrogate_model(model, learned)
    tag = ("reference" if src == "reference" else "learned") + "".join(f"-{t}" for t in tags)
    out = Path(__file__).resolve().parent / f"{model.name}-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    d = res.to_dict()
    d["learn_source"] = src
    d["command"] = "python results/surrogate/run_2d.py " + " ".join(argv)
    if model.surrogate.init_centres:
        d["well_occupancy"] = well_occupancy(res, np.asarray(model.surrogate.init_centres, dtype=float))
        print("well occupancy", json.dumps(d["well_occupancy"]), flush=True)
    write_json(out / "surrogate.json", d)
    rep = Report(f"bayescg surrogate: {model.name}", run_metadata(), subtitle=d["command"])
    rep.add_result("Surrogate dynamics", res, res.summary())
    rep.write(out / "report-surrogate.html")
    for i, (title, fig) in enumerate(res.figures()):
        fig.savefig(out / f"{i + 1}-{title.split(' (')[0].lower().replace(' ', '-')}.png", dpi=90, bbox_inches="tight")
    print(model.name, json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.summary().items()}),
          "timings", res.timings, "warnings", res.warnings, flush=True)


def well_occupancy(res, centres):
    """Fraction of late-time samples nearest each centre (K, d), full model and surrogate, with sqrt(p (1 - p) / M)."""
    M = res.settings["trajectories"]
    out = {"centres": centres.tolist()}
    for key in ("full", "surrogate"):
        x = res.curves[f"eq_{key}"]
        near = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        p = np.bincount(near, minlength=len(centres)) / len(x)
        out[key] = p.tolist()
        out[f"{key}_se"] = [math.sqrt(v * (1 - v) / M) for v in p]
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
