"""Issue 11: unconditional autocorrelation (lags 1-5) of the double well's micro-kicks -delta (cos(q/0.025) + cos(q/0.001)) at
the half steps of the damped map, delta 0.3, gamma 0.1 (the V-run of dw_p_colour.py), with standard errors over walkers.

    NUMBA_NUM_THREADS=1 python benchmarks/calibration/dw_kick_acf.py
"""
import math, numpy as np, numba
D, G = 0.3, 0.1
@numba.njit
def run(n, W, seed, L):
    np.random.seed(seed); E = math.exp(-G * D)
    acc = np.zeros((W, L + 1)); s1 = np.zeros(W); cnt = np.zeros(W)
    for w in range(W):
        q, p = np.random.normal(), np.random.normal(); buf = np.zeros(L + 1)
        for i in range(n):
            qh = q + 0.5 * D * p
            k = -D * (math.cos(qh / 0.025) + math.cos(qh / 0.001))
            p = E * p - D * (qh ** 3 - qh) + k
            q = qh + 0.5 * D * p
            if abs(q) > 6: cnt[w] = -1; break
            for j in range(L, 0, -1): buf[j] = buf[j - 1]
            buf[0] = k
            if i > n // 10 + L:
                for j in range(L + 1): acc[w, j] += buf[0] * buf[j]
                s1[w] += k; cnt[w] += 1
    return acc, s1, cnt
acc, s1, cnt = run(2_000_000, 16, 5, 5)
ok = cnt > 0
r = []
for w in np.where(ok)[0]:
    m = s1[w] / cnt[w]; c = acc[w] / cnt[w] - m * m; r.append(c[1:] / c[0])
r = np.array(r); print("lags 1-5 mean", np.round(r.mean(0), 4), "se", np.round(r.std(0, ddof=1) / np.sqrt(len(r)), 4), "walkers", len(r))
