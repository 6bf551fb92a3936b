"""Scale scan of (4.7) on a fine delta grid at two budgets: does the verdict depend on the sample size?

    python benchmarks/scales/run_scales.py run --steps 1e6          # -> results-1e6.json
    nice -n 10 python benchmarks/scales/run_scales.py run --steps 1e8
    python benchmarks/scales/run_scales.py plot benchmarks/scales/results-1e6.json benchmarks/scales/results-1e8.json
        # judges the stored rows with the current criterion (saved back, + results-*.html scales reports),
        # -> scales.png, table on stdout

The grid: 16 deltas log-spaced over [0.1, 0.8] plus the paper's 0.65, 0.2601, 0.1309.  Model
models/test3-cosine-series.toml as it is (gamma 0.5, 16 walkers, seed 1) except the number of steps.  The moments
of p are the simulator's streamed per-batch moments over every step (``p_moment_batches``); ``--stored`` instead
keeps up to 1e7 samples and takes the moments from them (the first study, before the simulator streamed them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODEL = ROOT / "models" / "test3-cosine-series.toml"
GRID = sorted(set(np.round(np.geomspace(0.1, 0.8, 16), 4).tolist()) | {0.65, 0.2601, 0.1309})
MAX_STORED = 10_000_000


def run(steps: float, out: Path, stored: bool = False):
    from bayescg.config import load_model
    from bayescg.io import run_metadata, write_json
    from bayescg.scales import scan_scales

    n = int(steps)
    over = [f"simulation.steps={n}"]
    if stored:
        over.append(f"simulation.max_samples={min(n, MAX_STORED)}")
    model = load_model(MODEL, over)
    t0 = time.perf_counter()
    res = scan_scales(model, GRID)
    payload = res.to_dict()
    payload["meta"] = run_metadata(model, command=f"benchmarks/scales/run_scales.py run --steps {steps:g}", seed=1)
    payload["meta"]["wall_seconds"] = time.perf_counter() - t0
    write_json(out, payload)
    print(f"{out}: {time.perf_counter() - t0:.0f} s, scale estimate {res.estimate.get('epsilon')}")


def plot(files: list[Path], png: Path, alt_kurtosis=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayescg.io import write_json
    from bayescg.report import Report
    from bayescg.plots.scales import VERDICT_STYLE, effect_panel
    from bayescg.scales import ScalesResult, ShapeTolerance, classify_rows

    data = [json.loads(f.read_text()) for f in files]
    for f, d in zip(files, data):
        # judge the stored effect sizes with the current criterion (the rows hold all it needs), save, and write
        # the scales report of that budget
        tol = ShapeTolerance(**d["tolerance"])
        d["scale_estimate"] = classify_rows(d["rows"], tol)
        res = ScalesResult(d["rows"], tol, d["scale_estimate"])
        d["warnings"] = res.warnings
        write_json(f, d)
        rep = Report(f"Scale scan of (4.7), {d['rows'][0]['steps']:.0e} steps per delta", meta=d.get("meta"))
        rep.add_result("Scale scan", res)
        rep.write(f.with_suffix(".html"))
    labels = [f"{d['rows'][0]['steps']:.0e} steps" for d in data]
    tol = data[0]["tolerance"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.6))
    for j, d in enumerate(data):
        rows = sorted(d["rows"], key=lambda r: r["delta"])
        hollow = {"filled": bool(j)}  # first budget hollow, second filled
        sh = 0.025 * (2 * j - 1)
        effect_panel(ax[0], rows, lambda r: ((r.get("excess_kurtosis") or [None])[0],
                                             (r.get("excess_kurtosis_se") or [None])[0]),
                     tol["kurtosis"], "excess kurtosis of p", sh, **hollow)
        effect_panel(ax[1], rows, lambda r: (r.get("noise_power_slope"), r.get("noise_power_slope_se")),
                     tol["slope"], "d log G2 / d log delta", sh, **hollow)
        effect_panel(ax[2], rows, lambda r: (r.get("noise_power"), r.get("noise_power_se")), None,
                     "G2 = 2 gamma / (delta beta_hat)", sh, **hollow)
    ax[2].set_yscale("log")
    ax[0].set_title(f"excess kurtosis, interval vs tolerance +-{tol['kurtosis']:g}", fontsize=10)
    ax[1].set_title(f"beta_hat plateau: log-slope of G2 vs tolerance +-{tol['slope']:g}", fontsize=10)
    ax[2].set_title("unresolved gradient power G2 (theory, all 20 cosines: 10)", fontsize=10)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", label=v, **{k: x for k, x in st.items() if k != "mfc"})
               for v, st in VERDICT_STYLE.items()]
    handles += [Line2D([], [], marker="o", color="k", mfc="white", ls="none", label=f"hollow: {labels[0]}"),
                Line2D([], [], marker="o", color="k", ls="none", label=f"filled: {labels[-1]}")]
    ax[0].legend(handles=handles, fontsize=8, loc="upper left")
    fig.suptitle("(4.7): scale criterion at two budgets (intervals: Bonferroni 95 % over the effects of a delta)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    # table
    by = [{r["delta"]: r for r in d["rows"]} for d in data]
    print("| delta | " + " | ".join(f"verdict {lab} | kurtosis [CI] | G2 slope [CI]" for lab in labels) + " |")
    print("|---|" + "---|---|---|" * len(labels))
    for delta in sorted(by[0], reverse=True):
        cells = []
        for b in by:
            r = b[delta]
            iv = r.get("intervals") or {}
            k, kc = r.get("excess_kurtosis"), iv.get("excess kurtosis")
            s, sc = r.get("noise_power_slope"), iv.get("G2 log-slope")
            cells += [r["verdict"], f"{k[0]:+.4f} [{kc[0]:+.4f}, {kc[1]:+.4f}]" if k and kc else "-",
                      f"{s:+.3f} [{sc[0]:+.3f}, {sc[1]:+.3f}]" if s is not None and sc else "-"]
        print(f"| {delta:g} | " + " | ".join(cells) + " |")
    for d, lab in zip(data, labels):
        print(f"{lab}: scale estimate {json.dumps(d['scale_estimate'])}")
    for k in alt_kurtosis or []:  # sensitivity: the same effect sizes judged with another kurtosis tolerance
        for d, lab in zip(data, labels):
            rows = [dict(r) for r in d["rows"]]
            est = classify_rows(rows, ShapeTolerance(**{**d["tolerance"], "kurtosis": k}))
            v = ", ".join(f"{r['delta']:g} {r['verdict'][0]}" for r in sorted(rows, key=lambda r: -r["delta"]))
            print(f"kurtosis tolerance {k:g}, {lab}: {v}; epsilon {est['epsilon']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--steps", type=float, required=True)
    r.add_argument("--out-dir", type=Path, default=HERE)
    r.add_argument("--stored", action="store_true",
                   help="keep up to 1e7 samples (for a simulator without streamed p_moment_batches)")
    p = sub.add_parser("plot")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--png", type=Path, default=HERE / "scales.png")
    p.add_argument("--alt-kurtosis", type=float, nargs="*", help="also print verdicts at these kurtosis tolerances")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        a.out_dir.mkdir(parents=True, exist_ok=True)
        run(a.steps, a.out_dir / f"results-{a.steps:.0e}.json".replace("+0", ""), a.stored)
    else:
        plot(a.files, a.png, a.alt_kurtosis)


if __name__ == "__main__":
    sys.exit(main())
