"""Effective friction of the full model (4.5) seen by the mean path (4.3).

For a linear system the mean path solves q'' + g q' + w0^2 q = 0 exactly, so fitting
A exp(-g t / 2) cos(w t + phi) (w^2 = w0^2 - g^2 / 4) to the mean path of an ensemble gives the
friction g and frequency w0 that a quadratic surrogate would need.  Run for the full V of (4.5) at
h = 5e-4 and, as a check of the fit, for the surrogate with the exact U_0 = q^2/2 (true g = 0.1, w0 = 1).
Usage: python results/surrogate/effective_friction.py [M]
"""
import sys

import numpy as np
from scipy.optimize import curve_fit

from bayescg.config import SurrogateSection
from bayescg.potentials import Potential
from bayescg.simulate import run_trajectories
from bayescg.surrogate import initial_conditions

M = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
sec = SurrogateSection()
q0, p0 = initial_conditions(sec, M, 1, 1)


def model(t, A, g, w0, phi):
    w = np.sqrt(max(w0 ** 2 - g ** 2 / 4, 1e-12))
    return A * np.exp(-g * t / 2) * np.cos(w * t + phi)


for name, expr, h in (("full V (4.5)", "q**2/2 + 0.05*sin(q/0.05) + 0.001*sin(q/0.001)", 5e-4),
                      ("surrogate, exact U_0", "q**2/2", 0.1)):
    V = Potential.from_expression(expr, ["q"])
    t, q, _ = run_trajectories(V, h, 50.0, q0, p0, integrator="langevin", gamma=0.1, seed=1,
                               record_every=max(1, round(0.05 / h)) * h)
    m = q[:, :, 0].mean(axis=1)
    se = q[:, :, 0].std(axis=1) / np.sqrt(M)
    par, cov = curve_fit(model, t, m, p0=[-2, 0.1, 1.0, 0.0], sigma=se + 1e-3)
    err = np.sqrt(np.diag(cov))
    print(f"{name:22s} M={M}: gamma_eff = {par[1]:.4f} +- {err[1]:.4f}, omega0 = {par[2]:.4f} +- {err[2]:.4f}")
