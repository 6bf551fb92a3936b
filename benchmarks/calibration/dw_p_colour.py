"""Issue 11: p-conditional colour of the micro-kicks in the double well at delta 0.3, gamma 0.1.

    NUMBA_NUM_THREADS=1 python benchmarks/calibration/dw_p_colour.py [steps_per_walker] [walkers] [kick_scale]
        (-> dw_p_colour.json; with kick_scale != 1, the i.i.d. kicks of (b), (c) scaled by it: dw_p_colour_scale<x>.json)

Independent numba copy of bayescg's damped map (position Verlet, p <- E p - delta V'(q_{n+1/2}), E = exp(-gamma delta)) on
(a) the full V, (b) U0 + iid Gaussian kicks (sd delta), (c) U0 + iid kicks -delta(cos phi1 + cos phi2), phi uniform."""
import math, sys, json, numpy as np, numba
D, G, E1, E2 = 0.3, 0.1, 0.025, 0.001
LO, HI, BINS = -2.5, 2.5, 120
PB = np.linspace(-0.6, 0.6, 13)  # 12 p bins

@numba.njit(cache=True)
def run(mode, n, burn, W, seed, hist, mom, cs, pb, ks):
    np.random.seed(seed)
    E = math.exp(-G * D); nb = pb.size - 1
    for w in range(W):
        q, p = np.random.normal(), np.random.normal()
        k1 = 0.0; k2 = 0.0; b1 = -1; b2 = -1
        for i in range(n):
            qh = q + 0.5 * D * p
            if mode == 0:
                k = -D * (math.cos(qh / E1) + math.cos(qh / E2))
            elif mode == 1:
                k = ks * D * np.random.normal()
            else:
                k = -ks * D * (math.cos(2 * math.pi * np.random.random()) + math.cos(2 * math.pi * np.random.random()))
            b = -1
            if p >= pb[0] and p < pb[nb]:
                b = int((p - pb[0]) / (pb[nb] - pb[0]) * nb)
            p = E * p - D * (qh * qh * qh - qh) + k
            q = qh + 0.5 * D * p
            if abs(q) > 6.0:
                mom[w, 0] = -1.0
                break
            if i >= burn:
                c = int((q - LO) / (HI - LO) * BINS)
                if 0 <= c < BINS:
                    hist[w, c] += 1
                mom[w, 0] += 1; mom[w, 1] += p; mom[w, 2] += p * p
                # conditional lag-1 / lag-2 kick products, binned by the momentum before the earlier kick
                if b1 >= 0:
                    cs[w, b1, 0] += 1; cs[w, b1, 1] += k1; cs[w, b1, 2] += k1 * k1; cs[w, b1, 3] += k1 * k
                if b2 >= 0:
                    cs[w, b2, 4] += k2 * k; cs[w, b2, 5] += 1
            k2 = k1; b2 = b1; k1 = k; b1 = b

def go(mode, n, W, seed, ks=1.0):
    hist = np.zeros((W, BINS)); mom = np.zeros((W, 3)); cs = np.zeros((W, PB.size - 1, 6))
    run(mode, n, n // 10, W, seed, hist, mom, cs, PB, ks)
    ok = mom[:, 0] > 0; print("diverged walkers", int((~ok).sum()), flush=True)
    hist, mom, cs = hist[ok], mom[ok], cs[ok]
    var = (mom[:, 2].sum() / mom[:, 0].sum()) - (mom[:, 1].sum() / mom[:, 0].sum()) ** 2
    return hist, var, cs

def U(hist, T):
    h = hist.sum(0); m = h > 0
    u = np.full(BINS, np.nan); u[m] = -T * np.log(h[m] / h.sum() / ((HI - LO) / BINS))
    return u, h

def rms(ua, ub, w):
    c = np.argsort(-w); keep = np.zeros(w.size, bool); keep[c[: np.searchsorted(np.cumsum(w[c]) / w.sum(), 0.98) + 1]] = True
    d = (ua - ub)[keep]; ww = w[keep]; d = d - (d * ww).sum() / ww.sum()
    return float(np.sqrt((d * d * ww).sum() / ww.sum())), keep

if __name__ == "__main__":
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 2_000_000
    W = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    ks = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    out = {"steps_per_walker": n, "walkers": W, "kick_scale_bc": ks, "runs": {}}
    res = {}
    for name, mode in (("a", 0), ("b", 1), ("c", 2)):
        for s in (1, 2):
            h, v, cs = go(mode, n, W, 100 * mode + s, ks)
            res[name, s] = (h, v, cs); out["runs"][f"{name}{s}"] = {"var_p": v}
            print(name, s, "var(p)", v, flush=True)
    # conditional correlations from (a), both seeds pooled over walkers
    cs = np.concatenate([res["a", 1][2], res["a", 2][2]])
    tab = []
    for j in range(PB.size - 1):
        r1 = []; r2 = []
        for w in range(cs.shape[0]):
            N, s1, s2, s11, s12, N2 = cs[w, j]
            if N > 100:
                v = s2 / N - (s1 / N) ** 2; r1.append((s11 / N - (s1 / N) ** 2) / v); r2.append((s12 / N2 - (s1 / N) ** 2) / v)
        r1 = np.array(r1); r2 = np.array(r2)
        tab.append({"p_lo": PB[j], "p_hi": PB[j + 1], "n": float(cs[:, j, 0].sum()), "lag1": float(r1.mean()),
                    "lag1_se": float(r1.std(ddof=1) / math.sqrt(r1.size)), "lag2": float(r2.mean()), "lag2_se": float(r2.std(ddof=1) / math.sqrt(r2.size)),
                    "pred_cos12p_over2": float(np.cos(12 * 0.5 * (PB[j] + PB[j + 1]) / 2) / 2)})
        print(tab[-1], flush=True)
    out["conditional_corr_a"] = tab
    cen = (np.linspace(LO, HI, BINS + 1)[:-1] + np.linspace(LO, HI, BINS + 1)[1:]) / 2
    Us = {k: U(res[k][0], res[k][1]) for k in res}
    Uall = {x: U(np.concatenate([res[x, 1][0], res[x, 2][0]]), (res[x, 1][1] + res[x, 2][1]) / 2) for x in "abc"}
    w = Uall["a"][1]
    rm = {}
    for x in "abc":
        rm[f"{x}1-{x}2 (MC, single seed)"] = rms(Us[x, 1][0], Us[x, 2][0], w)[0]
    for x, y in (("a", "c"), ("a", "b"), ("b", "c")):
        rm[f"{x}-{y}"] = rms(Uall[x][0], Uall[y][0], w)[0]
    print(rm, flush=True); out["rms"] = rm
    _, keep = rms(Uall["a"][0], Uall["c"][0], w)
    d = Uall["a"][0] - Uall["c"][0]; d = d - (d[keep] * w[keep]).sum() / w[keep].sum()
    prof = {}
    for g in (0, 0.5, 1, 1.25, 1.5, 1.75, 2):
        sel = keep & (np.abs(np.abs(cen) - g) < 0.1)
        prof[str(g)] = float((d[sel] * w[sel]).sum() / w[sel].sum()) if sel.any() else None
    print("profile a-c", prof, flush=True); out["profile_a_minus_c"] = prof
    name = "dw_p_colour.json" if ks == 1.0 else f"dw_p_colour_scale{ks:g}.json"
    json.dump(out, open(f"benchmarks/calibration/{name}", "w"), indent=1)
