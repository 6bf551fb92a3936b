"""PyMC models of PCG and the samplers/approximations run on them.

Priors (documented choice, ``prior_sd`` from the model file, default 2):

    theta_c ~ Normal(0, prior_sd) componentwise          (energy units; |theta| ~ 2 covers the
                                                           couplings of the slides' experiments)
    theta_cf ~ Uniform(0.5, 1)                            (label symmetry, see below)

Label symmetry: (X, theta_cf) -> (-X, 1 - theta_cf) with theta_c's odd terms (linear, triplet,
fixed field) negated leaves the likelihood (E1) invariant when mu_c = 0 and maps one mode onto
another otherwise.  Restricting theta_cf to (0.5, 1) ("a fine spin follows its coarse spin more
often than not") picks one labelling; the posterior is then unimodal in the cases we ran, and
the uniform prior adds no other information.  Unconstrained coordinates (NUTS, Laplace,
KL): theta_c and z = logit(2 theta_cf - 1) (PyMC's interval transform).

* :func:`marginal_model` sums X out exactly (used by ``nuts``).  Two interchangeable likelihoods,
  equal to 1e-10 (tests against enumeration):
  ``likelihood="op"`` (default): the numba kernel of :mod:`bayescg.ising.kernel` (scaled forward
  recursion, exact gradient (E2) by the expectation semiring) wrapped as a PyTensor Op with a
  ``numba_funcify`` implementation, so nutpie's compiled logp+gradient runs without Python;
  ``likelihood="graph"``: the same transfer matrices as a PyTensor graph (:func:`forward_logz`:
  probability space, tree-ordered product, O(log n_c) nodes) with gradients by autodiff.  The
  graph compiles in about a minute with nutpie (numba compiles each of its ~200 nodes), the Op
  in seconds; see benchmarks/RESULTS_ISING.md.
* :func:`fit_laplace` uses the exact Hessian of :func:`log_posterior` (expectation semiring,
  second order), checked against finite differences; the mode by trust-region Newton.
* :func:`sample_gibbs` (``gibbs``) keeps X as latent variables: a numba Gibbs sampler that redraws
  all X exactly from q(X | x, theta) by FFBS, then theta_cf | X exactly and theta_c | X by Metropolis.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ConvergenceError, InputError
from .coarse import CoarseModel

NEG = -1e30  # stands for log 0 inside pytensor graphs (finite, so gradients stay finite)


def _pt():
    import pytensor.tensor as pt

    return pt


def _emission_weights(cm: CoarseModel, counts, theta_cf):
    """Symbolic emission weights for counts (B, n_c) of fine spins agreeing with X_r = +1:
    returns eh (B, n_c, 2) (X_r = -1 / +1, normalized so the larger is 1) and the offsets
    (B,) = sum_r log of the normalizers.  0 log 0 = 0 (masks from the numpy counts)."""
    pt = _pt()
    a = np.asarray(counts, float)
    d = cm.level - a
    lt, l1 = pt.log(theta_cf), pt.log1p(-theta_cf)
    e1 = pt.switch(a > 0, a * lt, 0.0) + pt.switch(d > 0, d * l1, 0.0)  # X_r = +1: a agree
    e0 = pt.switch(d > 0, d * lt, 0.0) + pt.switch(a > 0, a * l1, 0.0)  # X_r = -1: l_c - a agree
    # the shift cancels in the value, so it can be a constant for autodiff (smaller gradient graph)
    mx = _const_grad(pt.maximum(e0, e1))
    mx = pt.switch(pt.isinf(mx), 0.0, mx)
    eh = pt.stack([pt.exp(e0 - mx), pt.exp(e1 - mx)], axis=-1)
    return eh, mx.sum(axis=1)


def _const_grad(v):
    from pytensor.gradient import disconnected_grad

    return disconnected_grad(v)


def forward_logz(cm: CoarseModel, coef, eh=None, offset=0.0):
    """PyTensor log partition function of the coarse chain (chain.py (1)), probability space.

    coef: symbolic (T,); eh: symbolic (B, n_c, 2) emission weights (<= 1, see
    :func:`_emission_weights`) or None (no emissions, B = 1); offset (B,) is added to the
    result.  Returns symbolic (B,).

    The forward recursion a_t = a_{t-1} M_t with the (S, S) step matrices
    M_t = W diag(E_t) (W = exp(log t - max), zero for impossible transitions; E_t the emission
    weight of each state's newest spin) is the ordered product P = M_L ... M_{n-1}.  It is
    evaluated as a balanced tree: the m = n_c - L matrices are padded with identities to a power
    of two and adjacent pairs multiplied at once for all patterns (one batched matmul per level,
    log2 levels), each product renormalized by its largest entry (log kept).  The graph and its
    autodiff gradient then have O(log n_c) nodes instead of O(n_c), which is what keeps the
    PyTensor/numba compilation short.  Shifts and normalizers cancel in the value and enter the
    gradient as constants.
    """
    pt = _pt()
    st = cm.structure
    tb = st.tables
    L, S, n = st.L, st.S, st.n
    pred, nb = tb["pred"], tb["newbit"]
    succ = np.zeros((S, S))
    mono_full = np.zeros((len(st.terms), S, S))  # [term, p, s']: term value entering s' from p
    for d in (0, 1):
        succ[pred[d], np.arange(S)] = 1.0
        mono_full[:, pred[d], np.arange(S)] = tb["mono"][:, pred[d], nb]
    lw = pt.tensordot(coef, mono_full, axes=1)  # (S, S) log weights (0 where impossible)
    mxt = _const_grad(pt.max(lw + np.where(succ > 0, 0.0, NEG)))
    W = succ * pt.exp(lw - mxt)
    m = n - L  # number of step matrices
    levels = int(np.ceil(np.log2(m))) if m > 1 else 0
    pad = np.zeros((2 ** levels, 1, 1))
    pad[m:] = 1.0  # identity matrices after the last step
    eye = pad * np.eye(S)[None]  # (m_pad, S, S)
    if eh is None:
        eh = pt.ones((1, n, 2))
    # emission of each state's newest spin: nb[s] = s // (S/2), so E[..., s] = eh[..., s // (S/2)]
    E = pt.repeat(eh[:, L:], S // 2, axis=2)  # (B, m, S)
    if 2 ** levels > m:
        E = pt.concatenate([E, pt.ones((E.shape[0], 2 ** levels - m, S))], axis=1)
    B = E.shape[0]
    # step matrices flattened over (pattern, step): pairs (2j, 2j+1) are adjacent steps of one pattern
    M = (W[None, None] * E[:, :, None, :] * (1.0 - pad)[None] + eye[None]).reshape((B * 2 ** levels, S, S))
    logs = pt.zeros((B * 2 ** levels,))  # log normalizer of each partial product
    for _ in range(levels):
        M = pt.matmul(M[0::2], M[1::2])  # batched over the leading axis, order kept
        sc = _const_grad(M.max(axis=(1, 2)))  # > 0 unless a pattern is impossible
        M = M / sc[:, None, None]
        logs = logs[0::2] + logs[1::2] + pt.log(sc)
    P = M  # (B, S, S)
    if L == 1:  # first block = site 0: weights (B, S = 2)
        first = eh[:, 0]
    else:
        first = 1.0
        for t in range(L):  # weight of the first block's emissions: (B, S)
            first = first * pt.tensordot(eh[:, t], np.eye(2)[tb["first_bits"][:, t]].T, axes=1)
    logsc = (n - L) * mxt + offset + logs
    if st.periodic:
        lc = pt.tensordot(coef, tb["closing"], axes=1)  # (F = S, S): ring closure after block f
        mx0 = _const_grad(pt.max(lc))
        Z = (first[:, :, None] * P * pt.exp(lc - mx0)[None]).sum(axis=(1, 2))
    else:
        w0 = pt.tensordot(coef, tb["w0"], axes=1)  # (S,)
        mx0 = _const_grad(pt.max(w0))
        Z = ((first * pt.exp(w0 - mx0)[None])[:, :, None] * P).sum(axis=(1, 2))
    return logsc + mx0 + pt.log(Z)


def _coef_graph(cm: CoarseModel, theta_c):
    pt = _pt()
    A, c0 = cm.design
    return cm.beta * (pt.dot(A, theta_c) + c0) if cm.K else cm.beta * pt.as_tensor(c0)


def pointwise_loglik_graph(cm: CoarseModel, agree, theta_c, theta_cf):
    """Symbolic (S_f,) log p(x_i | theta) of (E1); agree = cm.agree_counts(x) (numpy)."""
    coef = _coef_graph(cm, theta_c)
    eh, off = _emission_weights(cm, np.asarray(agree)[..., 1], theta_cf)
    return forward_logz(cm, coef, eh, off) - forward_logz(cm, coef)[0]


def total_loglik_graph(cm: CoarseModel, x, theta_c, theta_cf):
    """Symbolic sum_i log p(x_i | theta) of (E1), each symmetry orbit of the data once
    (:func:`bayescg.ising.kernel.canonical_patterns`) with its multiplicity."""
    from .kernel import canonical_patterns

    pt = _pt()
    counts, mult, _ = canonical_patterns(cm, x)
    coef = _coef_graph(cm, theta_c)
    eh, off = _emission_weights(cm, counts, theta_cf)
    # the prior's partition function is one more row without emissions (weights 1, offset 0)
    eh = pt.concatenate([eh, pt.ones((1, cm.n_c, 2))], axis=0)
    off = pt.concatenate([off, pt.zeros(1)])
    w = np.append(mult, -mult.sum())
    return pt.dot(w, forward_logz(cm, coef, eh, off))


_OP_CLASS = None


def _loglik_op_class():
    """The PyTensor Op class of the exact marginal likelihood, created once (lazy import of
    PyTensor) with a numba implementation registered, so that nutpie's numba-compiled logp and
    gradient call the kernel directly (nopython, no GIL) instead of an object-mode callback."""
    global _OP_CLASS
    if _OP_CLASS is not None:
        return _OP_CLASS
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch import numba_funcify

    pt = _pt()

    class MarginalLoglikOp(Op):
        """(theta_c (K,), theta_cf) -> (sum_i log p(x_i | theta), gradient (K+1,)), exact, by the
        numba kernel of :class:`bayescg.ising.kernel.FastLoglik` (E1)-(E2)."""

        __props__ = ()

        def __init__(self, fast):
            self.fast = fast
            super().__init__()

        def make_node(self, theta_c, theta_cf):
            theta_c = pt.as_tensor_variable(theta_c).astype("float64")
            theta_cf = pt.as_tensor_variable(theta_cf).astype("float64")
            return Apply(self, [theta_c, theta_cf], [pt.dscalar(), pt.dvector()])

        def perform(self, node, inputs, outputs):
            ll, g = self.fast(np.asarray(inputs[0], float), float(inputs[1]))
            outputs[0][0] = np.asarray(ll, dtype="float64")
            outputs[1][0] = np.asarray(g, dtype="float64")

        def grad(self, inputs, gout):
            if not isinstance(gout[1].type, DisconnectedType):
                raise NotImplementedError("second derivatives of the marginal likelihood Op")
            g = self(*inputs)[1]
            K = self.fast.cm.K
            return [gout[0] * g[:K], gout[0] * g[K]]

        def connection_pattern(self, node):
            return [[True, True], [True, True]]

        def __eq__(self, other):
            return self is other

        def __hash__(self):
            return id(self)

    @numba_funcify.register(MarginalLoglikOp)
    def _numba_marginal_loglik(op, node=None, **kwargs):
        # the data are compile-time constants of the returned function; no disk cache key (None)
        return op.fast.numba_function()

    _OP_CLASS = MarginalLoglikOp
    return _OP_CLASS


def marginal_model(cm: CoarseModel, x, prior_sd: float = 2.0, likelihood: str = "op"):
    """pm.Model with X summed out: free variables theta_c (K,), theta_cf in (0.5, 1).

    likelihood = "op": exact numba kernel wrapped as a pytensor Op (fast to compile, exact
    gradient (E2), nopython under nutpie); "graph": :func:`total_loglik_graph`, the transfer-matrix
    product in PyTensor with autodiff (identical values, longer compilation).
    """
    import pymc as pm

    from .kernel import FastLoglik

    if likelihood not in ("op", "graph"):
        raise InputError(f"likelihood must be 'op' or 'graph', got {likelihood!r}")
    cm.block_sums(x)  # shape check (InputError)
    with pm.Model(coords={"param": cm.names}) as model:
        theta_c = pm.Normal("theta_c", 0.0, prior_sd, dims="param")
        theta_cf = pm.Uniform("theta_cf", 0.5, 1.0)
        if likelihood == "graph":
            pm.Potential("loglik", total_loglik_graph(cm, x, theta_c, theta_cf))
        else:
            op = _loglik_op_class()(FastLoglik(cm, x))
            pm.Potential("loglik", op(theta_c, theta_cf)[0])
    return model


# --- running samplers ------------------------------------------------------------------------
@dataclass
class SamplerRun:
    idata: object  # arviz.InferenceData (posterior: theta_c (chain, draw, param), theta_cf); None if
    #                interrupted before any post-warm-up draw
    seconds: float  # sampling wall time (compilation excluded)
    compile_seconds: float
    backend: str
    cpu_seconds: float = float("nan")  # process CPU time of sampling (all threads)
    interrupted: bool = False  # stopped by SIGINT (control.interrupted); idata holds the draws so far


def sample_nuts(cm: CoarseModel, x, *, draws=1000, tune=1000, chains=4, seed=1, prior_sd=2.0,
                backend="auto", cores=None, likelihood="op", control=None, fast=None) -> SamplerRun:
    """NUTS on the marginal posterior through :func:`bayescg.sampling.sample`.

    backend "auto"/"nutpie" with likelihood "op": the cached numba kernel of the same density
    (:class:`bayescg.ising.kernel.MarginalDensity`, nutpie's C callbacks; nothing compiled per run);
    likelihood "graph", or backend "pymc": :func:`marginal_model`.  ``control``: a
    :class:`bayescg.runtime.RunControl` (or anything with ``interrupted``); once it is set (Ctrl-C)
    sampling stops and the run is returned with ``interrupted=True`` and the complete post-warm-up
    draws so far (chains cut to a common length; idata None if there were none).
    """
    from ..errors import Interrupted
    from ..sampling import _backend, sample
    from .kernel import MarginalDensity

    if backend not in ("auto", "nutpie", "pymc"):
        raise InputError(f"sampler must be auto, nutpie or pymc, got {backend!r}")
    if likelihood not in ("op", "graph"):
        raise InputError(f"likelihood must be 'op' or 'graph', got {likelihood!r}")
    be = _backend(backend)
    if be == "nutpie" and likelihood == "op":
        cm.block_sums(x)  # shape check (InputError)
        model = MarginalDensity(cm, x, prior_sd, fast)
    else:
        model = marginal_model(cm, x, prior_sd, likelihood)
    t0 = time.perf_counter()
    try:
        idata = sample(model, draws=draws, tune=tune, chains=chains, seed=int(seed), target_accept=0.9,
                       control=control, nuts_sampler=be, cores=cores)
        stopped = False
    except Interrupted as exc:
        idata, stopped = exc.partial, True
    if idata is None:
        return SamplerRun(None, time.perf_counter() - t0, 0.0, be, float("nan"), stopped)
    at = idata.posterior.attrs
    return SamplerRun(_keep_groups(idata), at["sampling_seconds"], at["compile_seconds"], be,
                      at["sampling_cpu_seconds"], stopped)


GIBBS_CHUNK = 25  # sweeps between progress / SIGINT checks
GIBBS_MH_STEPS = 10  # Metropolis steps on theta_c per sweep (cheap next to the FFBS of all X)


def sample_gibbs(cm: CoarseModel, x, *, draws=1000, tune=1000, chains=4, seed=1, prior_sd=2.0,
                 control=None, fast=None, cores: Optional[int] = None) -> SamplerRun:
    """Data augmentation (the slides' Gibbs sampler) on the coarse configurations X, in numba
    (:func:`bayescg.ising.kernel.gibbs_sweeps`): per sweep X_i ~ q(X | x_i, theta) exactly by FFBS,
    theta_cf | X from its truncated Beta, theta_c | X by random-walk Metropolis.  The target is the same
    posterior as :func:`sample_nuts`'s.  Tuning sweeps adapt the Metropolis proposal (Robbins-Monro scale,
    covariance of the chain's tuning draws) and are discarded.  Chain c starts at theta_c ~ U(-1, 1),
    z ~ U(-1, 1) and uses numba's np.random seeded from ``SeedSequence(seed)``'s c-th child; ``cores`` chains
    (default min(chains, 2)) run at once on threads, each chain in one thread (numba's np.random state is per
    thread), so the draws do not depend on ``cores``.  ``control``: see :func:`sample_nuts` (checked every GIBBS_CHUNK sweeps)."""
    run = gibbs_chains(cm, x, draws=draws, tune=tune, chains=chains, seed=seed, prior_sd=prior_sd, control=control,
                       fast=fast, cores=cores)
    t2, c2 = time.perf_counter(), time.process_time()
    idata = _gibbs_idata(cm, run["theta_c"], run["theta_cf"], run["acceptance_rate"], run["kept"], run["stopped"])
    return SamplerRun(idata, t2 - run["t1"], run["t1"] - run["t0"], "numba-gibbs", c2 - run["c1"], run["stopped"])


def gibbs_chains(cm: CoarseModel, x, *, draws=1000, tune=1000, chains=4, seed=1, prior_sd=2.0, control=None,
                 fast=None, cores: Optional[int] = None) -> dict:
    """The chains of :func:`sample_gibbs` as arrays, without its InferenceData (the warm-up child compiles the
    sweeps through it without importing ArviZ): theta_c (chains, draws, K), theta_cf and acceptance_rate
    (chains, draws), kept (chains,) draws kept per chain, stopped, and the clocks t0, t1 (perf_counter before and
    after compiling or loading the kernels) and c1 (process_time after it)."""
    from ..runtime import begin_stage
    from ..sampling import progress_tick
    from ..sampling import _chain_note
    from .kernel import FastLoglik, gibbs_sweeps, seed_numba

    draws, tune, chains = int(draws), int(tune), int(chains)
    fast = fast if fast is not None else FastLoglik(cm, x)
    K = cm.K
    t0 = time.perf_counter()
    seed_numba(0)  # compiles here (cold cache) or loads the kernels, outside the timed sampling
    t1, c1 = time.perf_counter(), time.process_time()
    total = chains * (tune + draws)
    cores = max(1, min(chains, int(cores or 2)))
    begin_stage(control, f"Gibbs: {chains} chains x ({tune} tuning + {draws} draws), {cores} at a time", total)
    out_c = np.full((chains, draws, K), np.nan)
    out_cf = np.full((chains, draws), np.nan)
    out_acc = np.full((chains, draws), np.nan)
    kept = np.zeros(chains, dtype=np.int64)
    rows = np.zeros(chains, dtype=np.int64)  # sweeps done per chain (progress)
    lock = threading.Lock()
    stop = threading.Event()

    def chain(c, ss):
        """One chain, wholly in the calling thread: numba's np.random state is per thread, so seeding here makes
        the chain's stream independent of which thread runs it and of the other chains (same draws as serial)."""
        s0, s1 = ss.generate_state(2)
        init = np.random.default_rng(int(s0)).uniform(-1.0, 1.0, K + 1)
        st_c = np.ascontiguousarray(init[:K])
        st_cf = np.array([0.5 + 0.5 / (1.0 + np.exp(-init[K]))])
        chol = np.eye(K)
        log_scale = np.array([np.log(0.1)])
        seed_numba(int(s1) % (2 ** 31))
        tc = np.empty((max(tune, 1), K))
        tf = np.empty(max(tune, 1))
        ta = np.empty(max(tune, 1))
        done = 0
        while done < tune + draws:
            if stop.is_set() or (control is not None and getattr(control, "interrupted", False)):
                stop.set()
                break
            if done < tune:
                n = min(GIBBS_CHUNK, tune - done)
                oc, of, oa = tc[done:done + n], tf[done:done + n], ta[done:done + n]
            else:
                j = done - tune
                n = min(GIBBS_CHUNK, draws - j)
                oc, of, oa = out_c[c, j:j + n], out_cf[c, j:j + n], out_acc[c, j:j + n]
            gibbs_sweeps(st_c, st_cf, chol, log_scale, n, done < tune, done, GIBBS_MH_STEPS, oc, of, oa,
                         *fast.args, float(prior_sd))
            done += n
            if done <= tune and done >= 50 and K > 0:  # proposal shape from the second half of the tuning draws
                cov = np.atleast_2d(np.cov(tc[done // 2:done].T)) + 1e-12 * np.eye(K)
                try:
                    L = np.linalg.cholesky(cov)
                    chol = L / np.exp(np.mean(np.log(np.diag(L))))  # unit geometric scale: log_scale keeps the size
                except np.linalg.LinAlgError:
                    pass
            with lock:
                rows[c] = done
                progress_tick(control, int(rows.sum()), note=f"[{_chain_note(rows, tune, draws)}]")
        kept[c] = max(0, done - tune)

    seqs = np.random.SeedSequence(int(seed)).spawn(chains)
    if cores == 1:
        for c, ss in enumerate(seqs):
            chain(c, ss)
    else:
        with ThreadPoolExecutor(max_workers=cores) as pool:  # gibbs_sweeps releases the GIL (nogil)
            for f in [pool.submit(chain, c, ss) for c, ss in enumerate(seqs)]:
                f.result()
    return {"theta_c": out_c, "theta_cf": out_cf, "acceptance_rate": out_acc, "kept": kept, "stopped": stop.is_set(),
            "t0": t0, "t1": t1, "c1": c1}


def _gibbs_idata(cm: CoarseModel, out_c, out_cf, out_acc, kept, stopped):
    """InferenceData of the Gibbs draws; after an interruption the chains with draws, cut to a common length."""
    import arviz as az

    if stopped:
        keep = np.nonzero(kept > 0)[0]
        if len(keep) == 0:
            return None
        n = int(kept[keep].min())
        out_c, out_cf, out_acc = out_c[keep, :n], out_cf[keep, :n], out_acc[keep, :n]
    return az.from_dict(posterior={"theta_c": out_c, "theta_cf": out_cf},
                        sample_stats={"acceptance_rate": out_acc}, coords={"param": list(cm.names)},
                        dims={"theta_c": ["param"]})


def _keep_groups(idata):
    """Posterior (theta_c, theta_cf) and sample_stats only; the rest is rebuilt by the pipeline."""
    import arviz as az

    groups = {"posterior": idata.posterior[["theta_c", "theta_cf"]]}
    groups["posterior"].attrs.update(idata.posterior.attrs)
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats
    return az.InferenceData(**groups)


def diagnostics(idata) -> dict:
    """:func:`bayescg.sampling.diagnostics` over theta_c, theta_cf."""
    from ..sampling import diagnostics as _diagnostics

    return _diagnostics(idata, ["theta_c", "theta_cf"])


# --- Laplace -----------------------------------------------------------------------------------
@dataclass
class LaplaceFit:
    mean: np.ndarray  # (K+1,) mode in unconstrained coordinates (theta_c, z)
    cov: np.ndarray  # (K+1, K+1) inverse negative Hessian at the mode
    names: list
    seconds: float

    def draws(self, size, rng):
        """theta_c (size, K), theta_cf (size,) from the Gaussian, mapped back through the transform."""
        z = rng.multivariate_normal(self.mean, self.cov, size=size)
        return z[:, :-1], 0.5 + 0.5 / (1.0 + np.exp(-z[:, -1]))


def to_unconstrained(theta_c, theta_cf) -> np.ndarray:
    """(theta_c, theta_cf) -> (theta_c, z), z = logit(2 theta_cf - 1): (..., K+1)."""
    u = 2.0 * np.asarray(theta_cf, float) - 1.0
    z = np.log(u) - np.log1p(-u)
    return np.concatenate([np.asarray(theta_c, float), np.asarray(z)[..., None]], axis=-1)


def log_posterior(cm: CoarseModel, x, u, prior_sd=2.0, hessian=True):
    """Log posterior density of u = (theta_c, z), z = logit(2 theta_cf - 1) (Jacobian included,
    up to a constant), with its exact gradient and Hessian from the expectation semiring
    (chain.moments): value, grad (K+1,), hess (K+1, K+1)."""
    from .chain import moments

    u = np.asarray(u, float)
    K = cm.K
    th, z = u[:K], u[K]
    sig = 1.0 / (1.0 + np.exp(-z))
    tf = 0.5 + 0.5 * sig
    A, _ = cm.design
    T = A.shape[0]
    coef = cm.coef(th)
    N = len(x)
    lq, Mq, Cq = moments(cm.structure, coef, em_features=cm.em_features(x),
                         em_coef=[np.log(tf), np.log1p(-tf)])
    lz, Mz, Cz = moments(cm.structure, coef)
    bA = cm.beta * A
    j = np.array([1.0 / tf, -1.0 / (1.0 - tf)])
    j2 = np.array([-1.0 / tf ** 2, -1.0 / (1.0 - tf) ** 2])
    MqS, CqS = Mq.sum(0), Cq.sum(0)
    ll = lq.sum() - N * lz[0]
    g_c = bA.T @ (MqS[:T] - N * Mz[0, :T])
    g_t = j @ MqS[T:]
    h1 = 0.5 * sig * (1 - sig)
    h2 = 0.5 * sig * (1 - sig) * (1 - 2 * sig)
    prec = 1.0 / prior_sd ** 2
    val = ll - 0.5 * prec * th @ th + np.log(h1)
    grad = np.append(g_c - prec * th, g_t * h1 + (1 - 2 * sig))
    if not hessian:
        return val, grad, None
    H = np.empty((K + 1, K + 1))
    H[:K, :K] = bA.T @ (CqS[:T, :T] - N * Cz[0, :T, :T]) @ bA - prec * np.eye(K)
    H_ct = bA.T @ CqS[:T, T:] @ j
    H_tt = j @ CqS[T:, T:] @ j + j2 @ MqS[T:]
    H[:K, K] = H[K, :K] = H_ct * h1
    H[K, K] = H_tt * h1 ** 2 + g_t * h2 - 2 * sig * (1 - sig)
    return val, grad, H


def fit_laplace(cm: CoarseModel, x, prior_sd=2.0, start=None) -> LaplaceFit:
    """Gaussian at the mode of the posterior density in unconstrained coordinates u = (theta_c, z)
    (Jacobian included: the density NUTS samples); covariance = inverse of minus the exact
    Hessian (:func:`log_posterior`).  Mode by trust-region Newton with the exact Hessian."""
    from scipy.optimize import minimize

    t0 = time.perf_counter()
    K = cm.K
    u0 = np.zeros(K + 1) if start is None else np.asarray(start, float)

    def f(u):
        v, g, _ = log_posterior(cm, x, u, prior_sd, hessian=False)
        return -v, -g

    def h(u):
        return -log_posterior(cm, x, u, prior_sd)[2]

    res = minimize(f, u0, jac=True, hess=h, method="trust-exact", options={"gtol": 1e-8, "maxiter": 200})
    if not np.all(np.isfinite(res.x)):
        raise ConvergenceError("laplace: mode search failed (non-finite)")
    H = h(res.x)
    H = 0.5 * (H + H.T)
    try:
        np.linalg.cholesky(H)
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        raise ConvergenceError("laplace: the Hessian at the mode is not negative definite") from None
    return LaplaceFit(np.asarray(res.x, float), cov, [*cm.names, "z_theta_cf"], time.perf_counter() - t0)


def gaussian_kl(m0, S0, m1, S1) -> float:
    """KL( N(m0, S0) || N(m1, S1) ) in nats."""
    k = len(m0)
    S1i = np.linalg.inv(S1)
    d = np.asarray(m1) - np.asarray(m0)
    _, ld0 = np.linalg.slogdet(S0)
    _, ld1 = np.linalg.slogdet(S1)
    return float(0.5 * (np.trace(S1i @ S0) + d @ S1i @ d - k + ld1 - ld0))


def compare_laplace_nuts(lap: LaplaceFit, theta_c_draws, theta_cf_draws) -> dict:
    """Quantify Laplace vs NUTS in the unconstrained space: KL(Gaussian fit of NUTS || Laplace),
    max |mean shift| in NUTS posterior sds, and sd ratios (Laplace / NUTS) per coordinate."""
    Z = to_unconstrained(theta_c_draws, theta_cf_draws)
    mn, Sn = Z.mean(0), np.atleast_2d(np.cov(Z.T))
    sd_n = np.sqrt(np.diag(Sn))
    sd_l = np.sqrt(np.diag(lap.cov))
    return {
        "kl": gaussian_kl(mn, Sn, lap.mean, lap.cov),
        "max_mean_shift_sd": float(np.max(np.abs(lap.mean - mn) / sd_n)),
        "sd_ratio": [float(v) for v in sd_l / sd_n],
        "parameters": lap.names,
    }


# --- the slides' Laplace ------------------------------------------------------------------------
@dataclass
class SlidesLaplaceFit:
    theta_c: np.ndarray  # (K,) MAP, held fixed
    theta_cf: float  # MAP
    sd_cf: float  # 1 / sqrt(complete-data information)
    info_complete: float
    info_observed: float  # minus d^2 log p(x | theta) / d theta_cf^2 at the MAP (theta_c fixed), for comparison
    seconds: float

    def draws(self, size, rng):
        """theta_c (size, K) (all the MAP), theta_cf (size,) ~ N(MAP, sd_cf^2) truncated to (0.5, 1)."""
        out = np.empty(0)
        while len(out) < size:
            z = rng.normal(self.theta_cf, self.sd_cf, size=2 * size + 16)
            out = np.concatenate([out, z[(z > 0.5) & (z < 1.0)]])
        return np.tile(self.theta_c, (size, 1)), out[:size]


def slides_laplace(cm: CoarseModel, x, prior_sd=2.0, fast=None) -> SlidesLaplaceFit:
    """The slides' Laplace approximation (slides, "Laplace approximation"): the MAP of (theta_c,
    theta_cf) (Normal(0, prior_sd) on theta_c, uniform theta_cf, exact likelihood (E1)), then
    theta_c fixed there and theta_cf Gaussian with variance 1 / I_c,

        I_c = E_q[n_agree] / theta_cf^2 + E_q[n_dis] / (1 - theta_cf)^2,

    minus the second derivative of the expected complete-data log-likelihood with the E-step's
    q(X | x, theta_MAP).  By the missing-information principle I_c >= I_observed, so this
    interval is narrower than the exact posterior's when the coarse spins are uncertain.
    fast: the data's FastLoglik (built when None)."""
    from .em import gradient, map_exact
    from .kernel import FastLoglik

    t0 = time.perf_counter()
    fast = FastLoglik(cm, x) if fast is None else fast
    est = map_exact(cm, x, prior_sd=prior_sd, fast=fast)
    A, _ = cm.design
    T = A.shape[0]
    th, tf = np.asarray(est.theta_c, float), float(est.theta_cf)
    _, _, Mq, _ = gradient(cm, x, th, tf)
    na, nd = float(Mq[:, T].sum()), float(Mq[:, T + 1].sum())
    info_c = na / tf ** 2 + nd / (1.0 - tf) ** 2
    eps = 1e-5 * min(tf - 0.5, 1.0 - tf)
    g = [fast(th, tf + s)[1][-1] for s in (eps, -eps)]
    info_o = -(g[0] - g[1]) / (2 * eps)
    return SlidesLaplaceFit(th, tf, float(1.0 / np.sqrt(info_c)), float(info_c), float(info_o),
                            time.perf_counter() - t0)
