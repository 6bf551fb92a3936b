"""Issue 11: does a *coloured* kick model reproduce what the double well's micro-scales teach?  (delta 0.3, gamma 0.1)

    NUMBA_NUM_THREADS=1 python benchmarks/calibration/dw_ma_kicks.py [steps_per_walker] [walkers] [kick_scale]
        (-> dw_ma_kicks[_scale<x>].json)

Independent numba copy of bayescg's damped map (as dw_p_colour.py) on
  (a) the full V = q^4/4 - q^2/2 + micro-scales (kicks -delta (cos(q/0.025) + cos(q/0.001)) at the half steps), and
  (d) U_0 + Gaussian kicks coloured as a moving average of order 5 whose autocorrelation at lags 1-5 equals the
      micro-kicks' measured one (dw_kick_acf.txt: 0.0003, 0.0245, 0.0036, 0.0020, 0.0009), variance (kick_scale delta)^2,
  (b) U_0 + i.i.d. Gaussian kicks of the same variance (the white model, as a control in the same run).
U = -var(p) log(histogram of q); RMS differences over the 98 % mass region of (a), centred, as dw_p_colour.py.
U_0 defines (b), (d) only; nothing is fitted to (a)'s learned U.
"""
import json, math, sys
from pathlib import Path

import numba
import numpy as np
from scipy.optimize import fsolve

sys.path.insert(0, str(Path(__file__).parent))
from dw_p_colour import BINS, D, G, HI, LO, U, rms  # noqa: E402

RHO = np.array([0.0003, 0.0245, 0.0036, 0.0020, 0.0009])  # dw_kick_acf.txt


def ma_coefficients(rho):
    """b_1..b_L of x_n = xi_n + sum_j b_j xi_{n-j} whose autocorrelation at lags 1..L is rho (small rho: b ~ rho)."""
    L = rho.size

    def eqs(b):
        c = np.concatenate([[1.0], b])
        g = np.array([c[: c.size - k] @ c[k:] for k in range(L + 1)])
        return g[1:] / g[0] - rho

    b = fsolve(eqs, rho.copy(), xtol=1e-14)
    assert np.max(np.abs(eqs(b))) < 1e-10
    return b


@numba.njit(cache=True)
def run(mode, n, burn, W, seed, hist, mom, c, ks):
    """mode 0: full V; 1: U_0 + iid Gaussian; 2: U_0 + MA Gaussian with taps c (c[0] = 1), normalised to unit variance."""
    np.random.seed(seed)
    E = math.exp(-G * D)
    L = c.size
    norm = math.sqrt((c * c).sum())
    for w in range(W):
        q, p = np.random.normal(), np.random.normal()
        xi = np.zeros(L)
        for j in range(L):
            xi[j] = np.random.normal()
        for i in range(n):
            qh = q + 0.5 * D * p
            if mode == 0:
                k = -D * (math.cos(qh / 0.025) + math.cos(qh / 0.001))
            elif mode == 1:
                k = ks * D * np.random.normal()
            else:
                for j in range(L - 1, 0, -1):
                    xi[j] = xi[j - 1]
                xi[0] = np.random.normal()
                s = 0.0
                for j in range(L):
                    s += c[j] * xi[j]
                k = ks * D * s / norm
            p = E * p - D * (qh * qh * qh - qh) + k
            q = qh + 0.5 * D * p
            if abs(q) > 6.0:
                mom[w, 0] = -1.0
                break
            if i >= burn:
                cc = int((q - LO) / (HI - LO) * BINS)
                if 0 <= cc < BINS:
                    hist[w, cc] += 1
                mom[w, 0] += 1
                mom[w, 1] += p
                mom[w, 2] += p * p


def go(mode, n, W, seed, c, ks):
    hist = np.zeros((W, BINS))
    mom = np.zeros((W, 3))
    run(mode, n, n // 10, W, seed, hist, mom, c, ks)
    ok = mom[:, 0] > 0
    hist, mom = hist[ok], mom[ok]
    var = mom[:, 2].sum() / mom[:, 0].sum() - (mom[:, 1].sum() / mom[:, 0].sum()) ** 2
    return hist, float(var), int((~ok).sum())


if __name__ == "__main__":
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 2_000_000
    W = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    ks = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    b = ma_coefficients(RHO)
    c = np.concatenate([[1.0], b])
    out = {"steps_per_walker": n, "walkers": W, "kick_scale": ks, "rho_target": RHO.tolist(), "ma_taps": c.tolist(),
           "runs": {}}
    res = {}
    for name, mode in (("a", 0), ("b", 1), ("d", 2)):
        for s in (1, 2):
            h, v, bad = go(mode, n, W, 1000 * mode + s, c, ks)
            res[name, s] = (h, v)
            out["runs"][f"{name}{s}"] = {"var_p": v, "blown_up": bad}
            print(name, s, "var(p)", round(v, 4), "blown up", bad, flush=True)
    cen = (np.linspace(LO, HI, BINS + 1)[:-1] + np.linspace(LO, HI, BINS + 1)[1:]) / 2
    Us = {k: U(res[k][0], res[k][1]) for k in res}
    Uall = {x: U(np.concatenate([res[x, 1][0], res[x, 2][0]]), (res[x, 1][1] + res[x, 2][1]) / 2) for x in "abd"}
    w = Uall["a"][1]
    rm = {f"{x}1-{x}2 (MC, single seed)": rms(Us[x, 1][0], Us[x, 2][0], w)[0] for x in "abd"}
    for x, y in (("a", "d"), ("a", "b"), ("b", "d")):
        rm[f"{x}-{y}"] = rms(Uall[x][0], Uall[y][0], w)[0]
    # the same on cells of 4 bins (0.167, about one period 2 pi 0.025 of the larger micro-scale), so what a smooth
    # (spline) fit can see is not mixed with a micro-modulation of the histogram
    coarse = {x: np.concatenate([res[x, 1][0], res[x, 2][0]]).reshape(-1, BINS // 4, 4).sum(-1) for x in "abd"}
    Tc = {x: (res[x, 1][1] + res[x, 2][1]) / 2 for x in "abd"}
    Uc = {x: -Tc[x] * np.log(np.maximum(coarse[x].sum(0), 1e-300)) for x in "abd"}
    wc = coarse["a"].sum(0)
    for x, y in (("a", "d"), ("a", "b"), ("b", "d")):
        rm[f"{x}-{y} on cells of 4 bins"] = rms(Uc[x], Uc[y], wc)[0]
    print(rm, flush=True)
    out["rms"] = rm
    for other in "bd":
        _, keep = rms(Uall["a"][0], Uall[other][0], w)
        dd = Uall["a"][0] - Uall[other][0]
        dd = dd - (dd[keep] * w[keep]).sum() / w[keep].sum()
        prof = {}
        for g in (0, 0.5, 1, 1.25, 1.5, 1.75, 2):
            sel = keep & (np.abs(np.abs(cen) - g) < 0.1)
            prof[str(g)] = float((dd[sel] * w[sel]).sum() / w[sel].sum()) if sel.any() else None
        print(f"profile a-{other}", prof, flush=True)
        out[f"profile_a_minus_{other}"] = prof
    name = "dw_ma_kicks.json" if ks == 1.0 else f"dw_ma_kicks_scale{ks:g}.json"
    json.dump(out, open(Path(__file__).parent / name, "w"), indent=1)
