"""HTML reports: self-contained, escaped, atomic; the generic ArviZ part checked against numpy;
and the reports the commands actually write (learn, and ``run`` = learn + scales in one file)."""
import base64
import os
import re
from pathlib import Path

import numpy as np
import pytest

from bayescg import report as R
from bayescg.cli import main

EVIL = '<script>alert("x")</script> & "quotes"'


def _idata(nchain=2, ndraw=200, sampler=True, seed=0):
    import arviz as az

    rng = np.random.default_rng(seed)
    post = {"beta": rng.normal(2.0, 0.1, (nchain, ndraw)),
            "theta": rng.normal([0.0, 1.0, -1.0], 0.2, (nchain, ndraw, 3)),
            "U": rng.normal(size=(nchain, ndraw, 50))}          # too big for trace plots
    kw = {}
    if sampler:
        kw["sample_stats"] = {"diverging": np.zeros((nchain, ndraw), bool)}
    obs = rng.poisson(20.0, 30).astype(float)
    kw["posterior_predictive"] = {"y": rng.poisson(20.0, (nchain, ndraw, 30)).astype(float)}
    kw["observed_data"] = {"y": obs}
    return az.from_dict(posterior=post, dims={"U": ["grid_point"], "theta": ["k"]}, **kw)


class FakeResult:
    """Implements the result protocol of docs/ARCHITECTURE.md with text that needs escaping."""

    warnings = [f"walkers trapped {EVIL}"]

    def __init__(self, idata):
        self.idata = idata

    def to_dict(self):
        return {"warnings": ["sampler had 3 divergent transitions"]}

    def summary(self):
        return {"dimension": 1, "beta_hat": 0.9871, "reference_rmse": 0.0123, "diagnostics.r_hat_max": 1.05,
                "diagnostics.ess_bulk_min": 42.0, "label": EVIL, "noise_covariance": [[1.0, 0.1], [0.1, 2.0]]}

    def figures(self):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        return [(f"figure {EVIL}", fig)]

    def to_inference_data(self):
        return self.idata


def _check_self_contained(text):
    """No external resource: every src is a PNG data URI, every href an in-page anchor, no <link>/<script>."""
    srcs = re.findall(r'\bsrc\s*=\s*["\']([^"\']*)', text, flags=re.I)
    hrefs = re.findall(r'\bhref\s*=\s*["\']([^"\']*)', text, flags=re.I)
    assert all(s.startswith("data:image/png;base64,") for s in srcs), [s[:40] for s in srcs]
    assert all(h.startswith("#") for h in hrefs), hrefs
    assert not re.search(r"<\s*(script|link|iframe|object|embed)\b", text, flags=re.I)
    assert "url(" not in text and "@import" not in text
    for s in srcs:  # every image is a real PNG
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return srcs


def test_report_self_contained_escaped_with_sections(tmp_path):
    rep = R.Report(f"title {EVIL}", {"created": "now", "seed": 3, "versions": {"numpy": "1"},
                                     "model": {"name": EVIL}}, subtitle=EVIL)
    rep.add_result("Effective potential", FakeResult(_idata()))
    rep.add_result("Approximation", FakeResult(_idata(nchain=1, sampler=False)))
    path = rep.write(tmp_path / "report.html")
    text = path.read_text()
    srcs = _check_self_contained(text)
    # fake figure + rank plot + ppc + ppc-by-index (sampler); fake + plot_posterior + 2 ppc (approximation)
    assert len(srcs) == 8
    assert "<script>" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in text
    for needle in ['<h2 id="effective-potential">', '<h2 id="approximation">', "Posterior summary (94% HDI)",
                   "draws of an approximation, not MCMC", "rank plots", "Marginal posteriors with 94% HDI",
                   "Posterior predictive check of y", 'href="#effective-potential"', "Model settings"]:
        assert needle in text, needle
    # warnings: attribute and to_dict() ones, in the section and collected at the top
    assert text.count("sampler had 3 divergent transitions") == 4
    assert '<div class="warn top"><b>&#9888; 4 warnings</b>' in text
    # diagnostics beyond thresholds are flagged; key numbers come first
    assert '<td class="bad">1.05</td>' in text and '<td class="bad">42</td>' in text
    cards = re.findall(r'<div class="k">([^<]*)</div>', text)
    assert cards[:3] == ["beta_hat", "reference_rmse", "diagnostics.r_hat_max"]
    assert "dimension" not in cards[:4]
    # small matrices as grids, not as Python lists
    assert '<table class="mat"><tr><td>1</td><td>0.1</td></tr><tr><td>0.1</td><td>2</td></tr></table>' in text


def _hdi_brute(x, prob):
    """Shortest interval holding ceil(prob n) sorted draws: an independent HDI."""
    x = np.sort(np.ravel(x))
    k = int(np.floor(prob * len(x)))
    widths = x[k:] - x[: len(x) - k]
    i = int(np.argmin(widths))
    return x[i], x[i + k]


def test_posterior_summary_against_numpy():
    idata = _idata(ndraw=500, seed=4)
    assert R.select_scalar_variables(idata) == ["beta", "theta"]
    rows = {r["variable"]: r for r in R.posterior_summary_rows(idata, ["beta", "theta"])}
    b = idata.posterior["beta"].values
    assert rows["beta"]["mean"] == pytest.approx(b.mean(), rel=1e-12)
    assert rows["beta"]["sd"] == pytest.approx(b.std(ddof=1), rel=1e-9)
    lo, hi = _hdi_brute(b, 0.94)
    assert rows["beta"]["hdi_3%"] == pytest.approx(lo, abs=1e-9) and rows["beta"]["hdi_97%"] == pytest.approx(hi, abs=1e-9)
    th = idata.posterior["theta"].values[..., 2]
    assert rows["theta[2]"]["mean"] == pytest.approx(th.mean(), rel=1e-12)
    # independent draws from 2 chains: R-hat close to 1, bulk ESS close to the number of draws
    assert abs(rows["beta"]["r_hat"] - 1) < 0.01 and rows["beta"]["ess_bulk"] > 600
    one = R.posterior_summary_rows(_idata(nchain=1), ["beta"])
    assert "r_hat" not in one[0] and one[0]["mean"] == pytest.approx(_idata(nchain=1).posterior["beta"].values.mean())


def test_table_flags_and_formats():
    t = R.table_html([{"delta": 0.5, "r_hat_max": 1.002, "trapped_fraction": 0.0, "scale_found": True},
                      {"delta": 0.065, "r_hat_max": 1.2, "trapped_fraction": 0.75, "scale_found": False}])
    assert '<td class="bad">1.2</td>' in t and '<td class="bad">0.75</td>' in t
    assert '<td>1.002</td>' in t and '<td class="good">yes</td>' in t and "<td>no</td>" in t
    assert R.table_html([]) == ""
    assert R.key_numbers({"a": 1, "seconds": 2.0, "beta_hat": 1.0, "beta_hat_se": 0.1}, 2) == {"beta_hat": 1.0,
                                                                                               "seconds": 2.0}


def test_report_write_is_atomic(tmp_path, monkeypatch):
    import bayescg.io as bio

    target = tmp_path / "report.html"
    target.write_text("old report")
    rep = R.Report("new")
    rep.text("new content")
    calls = []

    def boom(src, dst):
        calls.append((Path(src), Path(dst)))
        raise OSError("disk full")

    monkeypatch.setattr(bio.os, "replace", boom)
    with pytest.raises(OSError):
        rep.write(target)
    # the old file is intact, the temporary file was in the same folder and is gone
    assert target.read_text() == "old report"
    assert calls and calls[0][0].parent == tmp_path and calls[0][1] == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    monkeypatch.undo()
    rep.write(target)
    assert "new content" in target.read_text()


MODEL = """
name = "tiny-harmonic"
description = "harmonic potential with one small scale <b>bold?</b>"
[potential]
variables = ["q"]
expression = "q**2/2 + 0.05*sin(q/0.05)"
reference = "q**2/2"
domain = [[-4.0, 4.0]]
[simulation]
delta = 0.5
gamma = 0.1
steps = 400000
walkers = 4
seed = 3
bins = 60
[fit]
knots = 10
method = "map"
draws = 200
[scales]
deltas = [0.5, 0.2]
"""


def test_run_writes_one_combined_report(tmp_path, monkeypatch):
    """`bayescg run` on a model with [fit] and [scales]: report.html holds both stages, report-scales.html
    the scan alone; both self-contained; JSON outputs unchanged."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.toml").write_text(MODEL)
    assert main(["run", "m.toml", "--out", "o", "--quiet", "--scheduler", "serial"]) == 0
    out = tmp_path / "o"
    assert {"result.json", "posterior.nc", "report.html", "scales.json", "report-scales.html"} <= {
        p.name for p in out.iterdir()}
    text = (out / "report.html").read_text()
    _check_self_contained(text)
    assert '<h2 id="effective-potential">' in text and '<h2 id="scale-scan">' in text
    assert text.index("effective-potential") < text.index('id="scale-scan"')
    assert "Effective potential" in text and "Marginal posteriors with 94% HDI" in text
    assert "&lt;b&gt;bold?&lt;/b&gt;" in text
    scan = (out / "report-scales.html").read_text()
    _check_self_contained(scan)
    assert '<h2 id="scale-scan">' in scan and "Effective potential" not in scan
    assert len(re.findall(r"<img ", scan)) == 1
    # no stray temporary files from the atomic writes
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_report_survives_bad_figures_and_constant_variables(tmp_path):
    """A report after a long run must not fail on a plot: constant posterior entries (the unit diagonal of
    an LKJ correlation) are not plotted, and a failing figures() becomes a note."""
    import arviz as az

    rng = np.random.default_rng(1)
    corr = np.broadcast_to(np.eye(2), (2, 100, 2, 2)).copy()
    corr[..., 0, 1] = corr[..., 1, 0] = rng.uniform(-0.5, 0.5, (2, 100))
    idata = az.from_dict(posterior={"corr": corr, "Z": rng.normal(size=(2, 100, 2, 2))},
                         sample_stats={"diverging": np.zeros((2, 100), bool)})
    assert R.select_scalar_variables(idata) == ["Z"]

    class Broken(FakeResult):
        def figures(self):
            import matplotlib.pyplot as plt

            plt.figure()
            raise RuntimeError("no data to plot")

    import matplotlib.pyplot as plt

    n_open = len(plt.get_fignums())
    rep = R.Report("robust")
    rep.add_result("Broken", Broken(idata))
    text = rep.write(tmp_path / "r.html").read_text()
    assert "figures could not be drawn: RuntimeError: no data to plot" in text
    assert "Z[0, 1]" in text and "corr" not in text
    assert len(plt.get_fignums()) == n_open  # nothing left open

    class Builders(FakeResult):  # figures drawn one by one, no figure_warnings of its own
        def figures(self):
            return []

        def figure_builders(self):
            def bad():
                raise ValueError("empty panel")
            return [("first", lambda: _line_figure(0)), ("broken one", bad), ("third", lambda: _line_figure(2))]

    rep = R.Report("builders")
    rep.add_result("Builders", Builders(idata))
    text = rep.write(tmp_path / "b.html").read_text()
    assert text.count("<figcaption>first</figcaption>") == 1 and text.count("<figcaption>third</figcaption>") == 1
    assert "figure &#x27;broken one&#x27; could not be drawn: ValueError: empty panel" in text
    assert len(plt.get_fignums()) == n_open


def test_method_comparison_tables_and_diagnostic_warnings():
    """ising.json-like results: one row per method with its interval, exact value first, sampler
    diagnostics beyond thresholds turned into warnings; sweeps: one row per swept value."""
    mg = lambda m, lo, hi: {"mean": m, "lower": lo, "upper": hi}  # noqa: E731
    d = {"truth": {"magnetization": 0.5},
         "methods": {"nuts": {"magnetization": mg(0.49, 0.45, 0.53), "err_mag": 0.02, "err_corr": 0.1,
                              "diagnostics": {"r_hat_max": 1.2, "ess_bulk_min": 50.0, "divergences": 2}},
                     "relent": {"magnetization": mg(0.3, 0.29, 0.31), "err_mag": 0.4}},
         "laplace_vs_nuts": {"kl": 0.01, "parameters": ["lin", "pair1"]}}
    keys, tables = R.structured_tables(d)
    assert keys["exact magnetization"] == 0.5 and keys["nuts: err_mag"] == 0.02 and keys["nuts: r_hat_max"] == 1.2
    rows = tables[0][1]
    assert [r["method"] for r in rows] == ["exact (transfer matrix)", "nuts", "relent"]
    assert rows[1]["94% interval"] == "[0.45, 0.53]"
    html_t = R.table_html(tables[1][1])
    assert "lin, pair1" in html_t
    ws = R.diagnostic_warnings(d)
    assert ws == ["nuts: r_hat_max = 1.200 > 1.01: chains disagree, run longer",
                  "nuts: ess_bulk_min = 50 < 100: too few effective draws", "nuts: 2 divergent transitions"]
    sweep = {"sweep": {"key": "fine.field", "values": [0.0, 0.6]}, "truth": {"magnetization": [0.0, 0.9]},
             "methods": {"nuts": {"magnetization": {"mean": [0.01, 0.88], "lower": [-0.1, 0.8], "upper": [0.1, 0.95]},
                                  "err_mag": [None, 0.02]}}}
    keys, tables = R.structured_tables(sweep)
    assert [r["μ (fine field)"] for r in tables[0][1]] == [0.0, 0.6]
    assert tables[0][1][1]["nuts 94%"] == "[0.80, 0.95]" and keys == {"nuts: max err_mag": 0.02}
    assert R.structured_tables({"rows": []}) == ({}, [])


def test_result_without_summary_uses_plain_numbers_of_to_dict(tmp_path):
    """noise.json-like results have no summary(): the report shows their numbers and small matrices,
    and only the posterior variables asked for."""
    import arviz as az

    class NoiseLike:
        def to_dict(self):
            return {"beta_hat": 0.98, "noise_covariance": [[0.05, 0.025], [0.025, 0.025]],
                    "designs": [[[1.0, 0.0], [0.0, 0.5]]] * 3, "posterior": {"mean": 1}, "warnings": []}

        def to_inference_data(self):
            rng = np.random.default_rng(0)
            return az.from_dict(posterior={"chol": rng.normal(size=(2, 50, 3)), "Z": rng.normal(size=(2, 50, 2, 2))},
                                sample_stats={"diverging": np.zeros((2, 50), bool)})

    rep = R.Report("noise")
    rep.add_result("Noise", NoiseLike(), var_names=["Z", "missing"])
    text = rep.html()
    assert '<td class="text">beta_hat</td>' in text
    assert '<table class="mat"><tr><td>0.05</td><td>0.025</td>' in text
    assert ">designs<" not in text and ">posterior<" not in text
    assert "Z[1, 1]" in text and "chol[0]" not in text


# --- report contents (issue 17): what a reader must find, parsed from the HTML --------------------
def _cards(text):
    """{key: value text} of the key-number cards."""
    return dict(re.findall(r'<div class="k">([^<]*)</div><div class="v">(.*?)</div></div>', text))


def _settings(text):
    m = re.search(r'<pre class="settings">(.*?)</pre>', text, flags=re.S)
    assert m, "no settings block"
    return m.group(1)


def test_numbers_formatter():
    from bayescg.plots.numbers import interval, num, speedup

    assert [num(x) for x in (0.98712, 1234.5, 42.0, 1.05, 0.0123, 0.1 + 0.2, None)] == [
        "0.987", "1234", "42", "1.05", "0.0123", "0.3", "–"]
    assert num(1e-5) == "1e-5" and num(3.14e7) == "3.14e7" and num(-2.5e-4) == "-2.5e-4" and num(7) == "7"
    # a narrow interval keeps its ends apart (not [0.35, 0.36]), a wide one is not padded
    assert interval(0.3512, 0.3608) == "[0.351, 0.361]" and interval(1.0, 2.0) == "[1.0, 2.0]"
    assert interval(0.45, 0.53) == "[0.45, 0.53]" and interval(0.3512, 0.3515) == "[0.3512, 0.3515]"
    assert speedup(8.912) == "8.9x" and speedup(123.4) == "123x" and speedup(None) == "–"


def test_learn_report_contents_and_ppc_against_q(tmp_path):
    """A 1D learn (MAP, finite-delta correction with one short white-kick run): coverage of the reference and the
    correction among the key numbers, the settings block with every section learn reads ([fit] with defaults
    when the file has none), the posterior predictive check against q (not by index, no unlabelled az.plot_ppc),
    nothing 'could not be drawn'."""
    from bayescg.config import load_model
    from bayescg.io import run_metadata
    from bayescg.pipeline import learn_model
    from bayescg.plots.effective import plot_ppc_density

    (tmp_path / "m.toml").write_text(MODEL.replace('[fit]\nknots = 10\nmethod = "map"\ndraws = 200\n', ""))
    model = load_model(tmp_path / "m.toml", overrides=["simulation.steps=200000", "fit.method=map", "fit.knots=10",
                                                        "fit.draws=100", "fit.correction_steps=100000",
                                                        "fit.correction_iterations=1",
                                                        # one short white run: its Monte Carlo error is large, and
                                                        # this test is about the report, not the gate
                                                        "fit.correction_min_ratio=0"])
    res = learn_model(model)
    rep = R.Report("learn", run_metadata(load_model(tmp_path / "m.toml"), "learn"))
    rep.add_result("Effective potential", res)
    text = rep.write(tmp_path / "report.html").read_text()
    _check_self_contained(text)
    cards = _cards(text)
    assert "reference_coverage" in cards and re.fullmatch(r"0(\.\d{1,4})?|1", cards["reference_coverage"]), cards
    assert cards.get("correction applied") == "yes" and "correction size (max |dU|)" in cards, cards
    settings = _settings(text)
    for section in ("[potential]", "[simulation]", "[fit]   # not in the model file: defaults", "[scales]"):
        assert section in settings, section
    assert "Posterior predictive check of the histogram: observed and predicted density against q" in text
    assert "by index" not in text and "az.plot_ppc" not in text
    assert "could not be drawn" not in text and "could not plot" not in text
    ax = plot_ppc_density(res.fit)
    assert ax.get_xlabel() == "q" and ax.get_ylabel() == "density of q"
    labels = ax.get_legend_handles_labels()[1]
    assert "predicted density, 94% band" in labels and "observed density (histogram of q)" in labels


def test_settings_fill_every_section_the_command_reads():
    from bayescg.config import load_model

    root = Path(__file__).resolve().parents[1]
    m = load_model(root / "models" / "test1-quadratic.toml").to_dict()
    text = R.settings_text(m, "learn")
    assert "[fit]   # not in the model file: defaults" in text and "draws = 1000" in text
    assert "knots" not in text  # None: the default by dimension, which a re-run of these settings gets too
    assert "[surrogate]\n" in text and "# not in the model file" not in text.split("[surrogate]")[1].split("\n")[0]
    assert "[fit]" not in R.settings_text(m, "scales") and "[noise]" not in text  # 1D: no noise calibration


def test_speedups_carry_their_unit_and_numbers_are_rounded():
    class Surr:
        def summary(self):
            return {"Langevin speedup": 8.91234567, "Hamiltonian speedup": 12.345, "Langevin W1": 0.0123456789012345}

    rep = R.Report("s")
    rep.add_result("Surrogate dynamics", Surr())
    text = rep.html()
    assert _cards(text)["Langevin speedup"] == "8.9x" and "<td>12x</td>" in text
    assert "0.01235" in text and "0.0123456789" not in text
    assert R.key_numbers({"U_k source": "result.json", "time T": 4.0, "Langevin speedup": "0.975x"}, 2) == {
        "Langevin speedup": "0.975x", "time T": 4.0}  # the 2D summary's speedups are texts with their unit


def test_ising_sweep_report_says_mu_and_interval_kinds(tmp_path):
    """A [sweep] over fine.field: the table and the figure's axis say μ, the bands are labelled with their kind."""
    from bayescg.config import model_from_dict
    from bayescg.executor import SerialExecutor
    from bayescg.ising.pipeline import run_model
    from bayescg.plots.ising import plot_sweep_magnetization

    raw = {"name": "t", "fine": {"sites": 8, "field": 0.5, "coupling": 0.8}, "data": {"samples": 30, "seed": 2},
           "coarse": {"level": 2, "model": "110"},
           "inference": {"methods": ["exact_em", "relent"], "draws": 100, "chains": 2, "prediction_samples": 400,
                         "seed": 3},
           "sweep": {"key": "fine.field", "values": [-0.5, 0.5]}}
    res = run_model(model_from_dict(raw), executor=SerialExecutor())
    ax = plot_sweep_magnetization(res)
    assert ax.get_xlabel().startswith("μ")
    labels = ax.get_legend_handles_labels()[1]
    assert "exact_em: 94% Monte Carlo interval (point estimate)" in labels
    rep = R.Report("sweep")
    rep.add_result("Predictive coarse-graining", res, inference_data=False)
    text = rep.html()
    assert "<th>μ (fine field)</th>" in text and "fine.field</th>" not in text
    assert "could not be drawn" not in text and text.count("<figure>") == 2


def test_scales_report_marks_the_scale_and_lists_trapped_walkers():
    """Scale scan: trapped walkers in the warnings box at the top, one legend naming every marker and the found
    scale, the scanned deltas as non-overlapping ticks, the G2 axis in plain numbers."""
    from bayescg.plots.scales import plot_scale_scan
    from bayescg.scales import ScalesResult

    def row(delta, verdict, k, trapped=0):
        return {"delta": delta, "verdict": verdict, "excess_kurtosis": [k], "excess_kurtosis_se": [0.01],
                "skewness": [0.0], "skewness_se": [0.01], "noise_power": 10.0 * delta / 0.65, "noise_power_se": 0.1,
                "noise_power_slope": 0.3 if verdict == "accepted" else None, "noise_power_slope_se": 0.05,
                "trapped_fraction": trapped / 16, "trapped_walkers": trapped, "walkers": 16, "beta_hat": 0.1 / delta,
                "normality_pvalue": 0.3, "reason": verdict, "decided_by": ["excess kurtosis"], "intervals": {},
                "scale_found": verdict == "accepted", "z": 2.4}

    rows = [row(0.65, "rejected", 0.3), row(0.4, "accepted", 0.05), row(0.3, "accepted", 0.04, trapped=2),
            row(0.13, "rejected", 31.0, trapped=14)]
    rows[-1]["normality_pvalue"] = 0.0
    est = {"epsilon": 0.4, "bracket": [0.4, 0.65], "method": "test"}
    res = ScalesResult(rows, estimate=est)
    rep = R.Report("scan")
    rep.add_result("Scale scan", res)
    text = rep.html()
    top = re.search(r'<div class="warn top">(.*?)</div>', text, flags=re.S).group(1)
    assert "trapped walkers" in top and "delta 0.3: 2/16" in top and "delta 0.13: 14/16" in top
    assert "could not be drawn" not in text and "Dotted line: the scale found" in text
    assert "<td>&lt;1e-4</td>" in text and "<td>0.3</td>" in text  # normality p-values: 0 reads <1e-4
    ax = plot_scale_scan(res)
    fig = ax[0].get_figure()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "accepted delta (interval: Bonferroni 95%)" in labels and "rejected delta (interval: Bonferroni 95%)" in labels
    assert "scale found: eps ~ delta = 0.4" in labels
    assert [t.get_text() for t in ax[0].get_xticklabels()] == ["0.13", "0.3", "0.4", "0.65"]
    assert all("$" not in t.get_text() for t in ax[2].get_yticklabels())  # 1, 10; not 10^0, 10^1


def test_posterior_labels_keep_narrow_hdi_ends_apart():
    """az.plot_posterior's round_to counts significant digits: an HDI [1.48, 1.52] must not print as 1.5 / 1.5."""
    import arviz as az

    from bayescg.plots.diagnostics import summary_round_to

    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"beta": rng.normal(1.5, 0.01, (1, 2000)), "s": rng.normal(0.355, 0.0016, (1, 2000))})
    sig = summary_round_to(idata, ["beta", "s"], 0.94)
    for v in ("beta", "s"):
        lo, hi = az.hdi(idata, var_names=[v], hdi_prob=0.94)[v].values
        assert f"{lo:.{sig}g}" != f"{hi:.{sig}g}", (v, sig)


def test_arviz_runs_on_numpy_inside_reports_and_the_callers_setting_is_restored():
    import arviz as az

    from bayescg.plots import arviz_without_numba, with_arviz_numpy

    before = bool(az.Numba.numba_flag)
    assert before, "numba is a dependency: ArviZ should start on its numba paths"
    with arviz_without_numba():
        assert not az.Numba.numba_flag
        with arviz_without_numba():  # nested: the outer block's setting survives
            assert not az.Numba.numba_flag
        assert not az.Numba.numba_flag
    assert az.Numba.numba_flag == before
    seen = with_arviz_numpy(lambda: bool(az.Numba.numba_flag))()
    assert seen is False and az.Numba.numba_flag == before


def test_figures_a_result_draws_itself_are_not_drawn_again():
    """``report_figures_drawn``: the generic posterior and predictive figures of those groups are left out, the
    posterior summary table stays; without it both are drawn."""
    class Drawn(FakeResult):
        report_figures_drawn = frozenset({"posterior", "posterior_predictive"})

    idata = _idata()
    texts = []
    for cls in (FakeResult, Drawn):
        rep = R.Report("t")
        rep.add_result("r", cls(idata))
        texts.append(rep.html())
    plain, drawn = texts
    assert "Posterior summary" in plain and "Posterior summary" in drawn
    assert "Sampler diagnostics" in plain and "Sampler diagnostics" not in drawn
    assert "Posterior predictive check of y" in plain and "Posterior predictive check of y" not in drawn
    assert drawn.count("<figure>") == 1 and plain.count("<figure>") >= 3  # the result's own figure only


def test_ising_report_draws_each_posterior_once(tmp_path):
    """An Ising run with both samplers: each sampler's marginals and rank plots once (not also the generic
    diagnostics of the primary posterior), one predictive check, the summary table of the primary posterior."""
    from bayescg.config import model_from_dict
    from bayescg.executor import SerialExecutor
    from bayescg.ising.pipeline import run_model

    raw = {"name": "t", "fine": {"sites": 8, "field": 0.5, "coupling": 0.8}, "data": {"samples": 30, "seed": 2},
           "coarse": {"level": 2, "model": "110"},
           "inference": {"methods": ["laplace", "nuts", "gibbs"], "draws": 100, "tune": 100, "chains": 2,
                         "prediction_samples": 400, "posterior_samples": 20, "seed": 3}}
    res = run_model(model_from_dict(raw), executor=SerialExecutor())
    assert res.report_figures_drawn == {"posterior", "posterior_predictive"}
    rep = R.Report("ising")
    rep.add_result("Predictive coarse-graining", res)
    text = rep.html()
    assert "could not be drawn" not in text
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert sum("rank plots" in c for c in captions) == 2, captions          # nuts and gibbs, once each
    assert [c.split(":")[0] for c in captions if "rank plots" in c] == ["nuts", "gibbs"]
    assert sum("predictive check" in c.lower() for c in captions) == 1, captions
    assert "Posterior summary of nuts (94% HDI)" in text and text.count("<figure>") == len(captions) == 6


def test_sampler_figure_caption_says_what_is_drawn_for_one_chain_and_several():
    """One chain: a trace, not rank plots (they need two); the caption comes from the one place that decides."""
    from bayescg.plots.diagnostics import plot_posterior_diagnostics, sampler_caption
    from bayescg.plots._base import arviz_without_numba

    for nchain, word in ((1, "trace"), (2, "rank plots")):
        with arviz_without_numba():
            caption, fig = plot_posterior_diagnostics(_idata(nchain=nchain), ["beta"], True)
        assert caption == f"Sampler diagnostics: {sampler_caption(nchain)}" and word in caption
        assert ("rank" in " ".join(ax.get_xlabel() for ax in fig.axes).lower()) == (nchain >= 2)


def _line_figure(k):
    from bayescg.plots._base import pyplot

    fig, ax = pyplot().subplots(figsize=(3, 2))
    ax.plot(np.arange(10) ** (1 + 0.1 * k))
    ax.set_title(f"figure {k}")
    return fig


def test_figures_drawn_on_two_processes_are_the_serial_ones(monkeypatch):
    """render_each shares the builders between this process and a forked child: the same PNGs in the same order as
    one process drawing them all; a builder that fails (on either side) is left out with its message in the sink;
    a child that dies or hangs leaves its share to this process; figures drawn before (prebuilt) are closed."""
    from bayescg.plots import _base as B

    plt = B.pyplot()
    plt.close("all")
    parent = os.getpid()

    def bad():
        raise ValueError("no data")

    builders = [(f"f{k}", lambda k=k: _line_figure(k)) for k in range(5)]
    builders.insert(1, ("bad-child", bad))   # index 1: the child's share
    builders.insert(4, ("bad-parent", bad))  # index 4: this process's share
    serial_sink: list = []
    serial = [(t, B.figure_to_data_uri(f)) for t, f in B.draw_each(builders, serial_sink)]
    sink: list = []
    both = B.render_each(builders, sink)
    assert both == serial and [t for t, _ in both] == ["f0", "f1", "f2", "f3", "f4"]
    assert sorted(sink) == sorted(serial_sink) and len(sink) == 2  # the same message once each
    assert plt.get_fignums() == []

    def dies_in_child(k):
        if os.getpid() != parent:
            os._exit(3)
        return _line_figure(k)

    dying = [(f"f{k}", lambda k=k: dies_in_child(k)) for k in range(4)]
    assert B.render_each(dying, []) == serial[:4]

    def hangs_in_child(k):
        if os.getpid() != parent:
            import time
            time.sleep(60)
        return _line_figure(k)

    monkeypatch.setattr(B, "RENDER_CHILD_TIMEOUT", 1.0)
    hanging = [(f"f{k}", lambda k=k: hangs_in_child(k)) for k in range(2)]
    assert B.render_each(hanging, []) == serial[:2]
    pre = B.prebuilt([(f"f{k}", _line_figure(k)) for k in range(5)])
    assert B.render_each(pre, []) == serial and plt.get_fignums() == []
