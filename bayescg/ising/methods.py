"""Learning methods of PCG as classes, registered by name (``inference.methods`` picks them).

Each method is one class with a ``name``, a fixed ``id`` (its random stream is
``SeedSequence([inference.seed, id])``, so results do not depend on which other methods ran) and
``fit(ctx) -> MethodFit``.  A new method is one class decorated with :func:`register`; the
pipeline (:mod:`bayescg.ising.pipeline`) turns every ``MethodFit`` into predictions the same way.

==============  ====================================================================================
exact_em        EM with exact E-step / Newton M-step (transfer matrices), maximum likelihood
em              Monte Carlo EM of the slides (Gibbs E-step with S_q, M-step with S_c), max. likelihood,
                stopped by a convergence test that accounts for its Monte Carlo error (em.mc_em)
laplace         Gaussian at the posterior mode in (theta_c, logit(2 theta_cf - 1)), exact Hessian of
                the marginal posterior (all parameters)
laplace_slides  the slides' Laplace: theta_c fixed at its MAP, theta_cf Gaussian with the inverse of
                the complete-data information from the E-step (missing information ignored)
nuts            NUTS on the exact marginal posterior (X summed out); nutpie on the cached numba kernel
                if importable (bayescg.sampling)
gibbs           data augmentation in numba: exact FFBS for X, exact theta_cf | X, Metropolis theta_c | X
relent          relative entropy (Shell 2008): majority map, ML fit of p_c, majority back-map
==============  ====================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .coarse import CoarseModel

METHODS: dict = {}


def register(cls):
    """Class decorator: one instance of ``cls`` under ``cls.name`` in :data:`METHODS`."""
    if cls.name in METHODS or any(m.id == cls.id for m in METHODS.values()):
        raise RuntimeError(f"ising method {cls.name!r} (id {cls.id}) registered twice")
    METHODS[cls.name] = cls()
    return cls


@dataclass
class FitContext:
    """What a method may use: the coarse model, data x (S_f, n_f), the [inference] section, its
    own random generator, the SIGINT control, the prior sd, the NUTS backend and the exact
    likelihood kernel (FastLoglik) of these data."""

    cm: CoarseModel
    x: np.ndarray
    inf: Any
    rng: np.random.Generator
    control: Any = None
    prior_sd: float = 2.0
    backend: str = "auto"
    fast: Any = None


@dataclass
class MethodFit:
    """Typed result of one method: a point estimate (``theta_c`` (K,), ``theta_cf``) or draws
    (``draws_c`` (chains, draws, K), ``draws_cf`` (chains, draws)); ``backmap`` "pcf" or
    "majority"; ``gaussian`` the Laplace fit (for laplace_vs_nuts); ``partial`` set when SIGINT
    stopped a sampler (draws_c None if it had no post-warm-up draw yet)."""

    theta_c: Optional[np.ndarray] = None
    theta_cf: Optional[float] = None
    draws_c: Optional[np.ndarray] = None
    draws_cf: Optional[np.ndarray] = None
    backmap: str = "pcf"
    extra: dict = field(default_factory=dict)
    idata: Any = None
    diagnostics: Optional[dict] = None
    partial: Optional[dict] = None
    gaussian: Any = None
    warnings: list = field(default_factory=list)

    @property
    def is_point(self) -> bool:
        return self.draws_c is None


class IsingMethod:
    name = ""
    id = -1
    sampler = False  # MCMC draws with diagnostics and PSIS-LOO
    stages = False  # fit() opens its own progress stages (the pipeline's stage before them is the set-up)

    def fit(self, ctx: FitContext) -> MethodFit:  # pragma: no cover - interface
        raise NotImplementedError


@register
class ExactEM(IsingMethod):
    name, id = "exact_em", 0

    def fit(self, ctx):
        from .em import exact_em

        est = exact_em(ctx.cm, ctx.x, control=ctx.control)
        return MethodFit(est.theta_c, est.theta_cf, extra={"iterations": est.iterations, "loglik": est.loglik,
                                                           "converged": est.converged})


@register
class MonteCarloEM(IsingMethod):
    name, id = "em", 1
    stages = True

    def fit(self, ctx):
        from .em import mc_em

        inf = ctx.inf
        est = mc_em(ctx.cm, ctx.x, iterations=int(inf.em_iterations), S_q=int(inf.posterior_samples),
                    S_c=int(inf.coarse_samples), seed=int(ctx.rng.integers(2 ** 31)), control=ctx.control)
        ws = [] if est.converged else [
            f"em: Monte Carlo EM did not pass its convergence test within {est.iterations} iterations "
            f"(inference.em_iterations); the estimate may still drift"]
        return MethodFit(est.theta_c, est.theta_cf, warnings=ws,
                         extra={"iterations": est.iterations, "loglik": est.loglik, "converged": est.converged,
                                "mc_se": est.mc_se})


@register
class Relent(IsingMethod):
    name, id = "relent", 5

    def fit(self, ctx):
        from .relent import relent_fit

        est = relent_fit(ctx.cm, ctx.x, rng=ctx.rng)
        return MethodFit(est.theta_c, None, backmap="majority",
                         extra={"backmap": "uniform over blocks with the coarse spin's majority (ties 1/2)"})


@register
class Laplace(IsingMethod):
    name, id = "laplace", 2

    def fit(self, ctx):
        from .bayes import fit_laplace

        lap = fit_laplace(ctx.cm, ctx.x, ctx.prior_sd)
        n = int(ctx.inf.draws) * int(ctx.inf.chains)
        dc, df = lap.draws(n, ctx.rng)
        return MethodFit(draws_c=dc[None], draws_cf=df[None], gaussian=lap,
                         extra={"mode_unconstrained": list(lap.mean), "cov_unconstrained": lap.cov.tolist()})


@register
class LaplaceSlides(IsingMethod):
    """The slides' Laplace approximation: theta_c at the MAP (no uncertainty), theta_cf ~
    N(theta_cf_MAP, 1 / I_c) truncated to (0.5, 1), I_c = E_q[n_agree] / theta_cf^2 +
    E_q[n_dis] / (1 - theta_cf)^2 the complete-data information of theta_cf with the E-step's
    q(X | x, theta_MAP).  I_c exceeds the observed information by the missing information, so
    the interval is too narrow where X is uncertain (compare ``posterior_check``)."""

    name, id = "laplace_slides", 6

    def fit(self, ctx):
        from .bayes import slides_laplace

        sl = slides_laplace(ctx.cm, ctx.x, ctx.prior_sd, fast=ctx.fast)
        n = int(ctx.inf.draws) * int(ctx.inf.chains)
        dc, df = sl.draws(n, ctx.rng)
        return MethodFit(draws_c=dc[None], draws_cf=df[None],
                         extra={"theta_c_map": list(map(float, sl.theta_c)), "theta_cf_map": sl.theta_cf,
                                "theta_cf_sd_gaussian": sl.sd_cf,
                                "complete_information": sl.info_complete,
                                "observed_information": sl.info_observed})


class _Sampler(IsingMethod):
    sampler = True
    stages = True

    def _finish(self, run, extra, inf):
        from .bayes import diagnostics

        out = MethodFit(idata=run.idata, extra=extra)
        if run.interrupted:
            c, d = (0, 0) if run.idata is None else run.idata.posterior.theta_cf.shape
            out.partial = {"method": self.name, "draws": int(d), "chains": int(c),
                           "requested_draws": int(inf.draws), "requested_chains": int(inf.chains)}
            extra["interrupted"] = out.partial
        if run.idata is not None:
            out.draws_c = run.idata.posterior.theta_c.values
            out.draws_cf = run.idata.posterior.theta_cf.values
            out.diagnostics = diagnostics(run.idata)
        return out

    def _kw(self, ctx):
        inf = ctx.inf
        return dict(draws=int(inf.draws), tune=int(inf.tune), chains=int(inf.chains),
                    seed=int(ctx.rng.integers(2 ** 31)), prior_sd=ctx.prior_sd, control=ctx.control)


@register
class NUTS(_Sampler):
    name, id = "nuts", 3

    def fit(self, ctx):
        from .bayes import sample_nuts

        run = sample_nuts(ctx.cm, ctx.x, backend=ctx.backend, likelihood=getattr(ctx.inf, "likelihood", "op"),
                          fast=ctx.fast, **self._kw(ctx))
        return self._finish(run, {"backend": run.backend, "sampling_seconds": run.seconds,
                                  "sampling_cpu_seconds": run.cpu_seconds, "compile_seconds": run.compile_seconds},
                            ctx.inf)


@register
class Gibbs(_Sampler):
    name, id = "gibbs", 4

    def fit(self, ctx):
        from .bayes import sample_gibbs

        run = sample_gibbs(ctx.cm, ctx.x, fast=ctx.fast, **self._kw(ctx))
        return self._finish(run, {"backend": run.backend, "sampling_seconds": run.seconds,
                                  "sampling_cpu_seconds": run.cpu_seconds}, ctx.inf)


#: canonical order in which methods run and are reported
ORDER = ("exact_em", "em", "laplace", "laplace_slides", "nuts", "gibbs", "relent")
