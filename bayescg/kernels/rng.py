"""Per-walker random numbers: xoshiro256** (Blackman & Vigna) with ziggurat normals.

Each walker owns a state of four uint64 (an array row, ``states[w]``), seeded from
``numpy.random.SeedSequence(seed).spawn(walkers)``, so a walker's stream does not depend on
which thread runs it or on the number of threads.  No shared state.  Every function takes either one state ``s``
(uint64[4]) or the table of states with the walker's row, ``(states, w)``, so that loops over walkers make no row
view ``states[w]`` per draw.  The 1D lane loop draws its white kicks for its lanes together (:func:`lanes_normal`,
states held transposed; the same draws as :func:`normal` lane by lane): a white-kick run takes half the time it took
drawing lane by lane through row views (benchmarks/bench_white_kick.py).

Normals: the ziggurat of Marsaglia & Tsang (J. Stat. Softw. 5(8), 2000) with 256 layers and 52-bit
abscissae drawn from bits independent of the layer index (Doornik 2005), the scheme numpy's
``Generator.standard_normal`` uses: ~99.3 % of draws cost one uint64, a multiply and a compare.  It
replaced Box-Muller (a log, a sqrt, a cos and a sin per pair, one of which the kernels threw away:
54 ns per normal, about half of a white-kick step; benchmarks/RESULTS_END_TO_END.md).
"""
from __future__ import annotations

import numpy as np
from numba.extending import overload

from .jit import inner

_U5 = np.uint64(5)
_U9 = np.uint64(9)
_S17 = np.uint64(17)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2^-53


_ZR = 3.6541528853610088  # where the tail starts: Marsaglia's r for 256 layers


def _ziggurat_tables(n: int = 256, r: float = _ZR):
    """(k, w, f) of the 256-layer normal ziggurat (Marsaglia & Tsang's zigset with 2^52 in place of 2^31): the
    layers' right edges x_i (w = x_i / 2^52 scales a 52-bit integer to an abscissa; layer 0 is the base strip of
    area v, the tail beyond r included), k[i] = 2^52 x_{i-1} / x_i (an integer below it lies inside the density for
    sure), f[i] = exp(-x_i^2 / 2).  r is Marsaglia's for 256 layers; v, the common area of the layers under
    exp(-x^2 / 2), is computed from it (r exp(-r^2 / 2) + the tail's integral) rather than taken to 12 digits, so
    the top layer closes to 1e-13."""
    import math

    v = r * math.exp(-0.5 * r * r) + math.sqrt(0.5 * math.pi) * math.erfc(r / math.sqrt(2.0))
    m = 2.0 ** 52
    k, w, f = np.zeros(n), np.zeros(n), np.zeros(n)
    dn = tn = r
    q = v / np.exp(-0.5 * dn * dn)
    k[0], k[1] = (dn / q) * m, 0.0
    w[0], w[n - 1] = q / m, dn / m
    f[0], f[n - 1] = 1.0, np.exp(-0.5 * dn * dn)
    for i in range(n - 2, 0, -1):
        dn = np.sqrt(-2.0 * np.log(v / dn + np.exp(-0.5 * dn * dn)))
        k[i + 1] = (dn / tn) * m
        tn = dn
        f[i] = np.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k.astype(np.uint64), w, f


_ZK, _ZW, _ZF = _ziggurat_tables()
_M52 = np.uint64(0x000FFFFFFFFFFFFF)
_U255 = np.uint64(0xFF)
_S8 = np.uint64(8)
_U1 = np.uint64(1)


@inner
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


def _word(s, w, k):
    """Word k of the state: s[k] for one state (uint64[4]), s[w, k] for a table of states (W, 4)."""


@overload(_word)
def _ov_word(s, w, k):
    if s.ndim == 1:
        return lambda s, w, k: s[k]
    return lambda s, w, k: s[w, k]


def _store(s, w, s0, s1, s2, s3):
    """Write the four words of the state (see :func:`_word`)."""


@overload(_store)
def _ov_store(s, w, s0, s1, s2, s3):
    if s.ndim == 1:
        def one(s, w, s0, s1, s2, s3):
            s[0] = s0
            s[1] = s1
            s[2] = s2
            s[3] = s3
        return one

    def row(s, w, s0, s1, s2, s3):
        s[w, 0] = s0
        s[w, 1] = s1
        s[w, 2] = s2
        s[w, 3] = s3
    return row


@inner
def _xoshiro(s0, s1, s2, s3):
    """One xoshiro256** step on the state's four words -> (output, the four new words)."""
    result = _rotl(s1 * _U5, 7) * _U9
    t = s1 << _S17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@inner
def next_u64(s, w=0):
    """Next uint64 of the xoshiro256** state ``s`` (uint64[4]; or row ``w`` of a table (W, 4)), updated in place."""
    result, s0, s1, s2, s3 = _xoshiro(_word(s, w, 0), _word(s, w, 1), _word(s, w, 2), _word(s, w, 3))
    _store(s, w, s0, s1, s2, s3)
    return result


@inner
def _unit(s, w=0):
    """Uniform on [0, 1) with 53 random bits."""
    return np.float64(next_u64(s, w) >> _S11) * _INV53


@inner
def normal(s, w=0):
    """One standard normal from state ``s`` (or row ``w`` of a table; ziggurat, module docstring)."""
    return _normal_from(s, w, next_u64(s, w))


@inner
def _layer(r):
    """The ziggurat's fast path on a uint64 r -> (x, layer i, sign, accepted): x is the normal when accepted (99.3 %)."""
    i = int(r & _U255)
    r >>= _S8
    sgn = 1.0 - 2.0 * np.float64(np.int64(r & _U1))  # no branch on a random bit
    ra = (r >> _U1) & _M52
    x = sgn * np.float64(np.int64(ra)) * _ZW[i]  # ra < 2^52: a signed conversion is one instruction
    return x, i, sgn, ra < _ZK[i]


@inner
def _normal_from(s, w, r):
    """The normal whose first uint64 ``r`` was just drawn from ``s`` (row ``w``): the low 8 bits of a uint64 pick the
    layer, the next one the sign, the 52 above it the abscissa; rejected draws (0.7 %) start over with a new uint64
    from the stream, draws in the base layer's tail beyond r come from Marsaglia's exponential rejection."""
    while True:
        x, i, sgn, accepted = _layer(r)
        if accepted:
            return x
        if i == 0:  # the tail |z| > r: x = r + E1 / r accepted with probability exp(-E1^2 / (2 r^2))
            while True:
                xx = -np.log1p(-_unit(s, w)) / _ZR
                yy = -np.log1p(-_unit(s, w))
                if yy + yy > xx * xx:
                    return sgn * (_ZR + xx)
        elif (_ZF[i - 1] - _ZF[i]) * _unit(s, w) + _ZF[i] < np.exp(-0.5 * x * x):
            return x
        r = next_u64(s, w)


@inner
def lanes_normal(t, live, out, r, one):
    """out[l] = one normal from lane l's stream for every lane with live[l] (the others draw nothing): what
    :func:`normal` gives from each lane's state, computed for the lanes together.  t (4, L): the lanes' xoshiro
    states, transposed (word k of lane l at t[k, l]), updated in place; live (L,) bool; out, r (L,) float64 / uint64
    scratch; one (4,) uint64 scratch.  Every lane's next uint64 and the ziggurat's fast accept test are computed for all
    L lanes (the loops vectorize; a lane not live keeps its state by a select), a lane rejected there (0.7 %) is
    finished by :func:`_normal_from` from its own uint64, so each stream is drawn exactly as one walker's."""
    L = t.shape[1]
    for l in range(L):
        s0, s1, s2, s3 = t[0, l], t[1, l], t[2, l], t[3, l]
        r[l], n0, n1, n2, n3 = _xoshiro(s0, s1, s2, s3)
        keep = live[l]
        t[0, l] = n0 if keep else s0
        t[1, l] = n1 if keep else s1
        t[2, l] = n2 if keep else s2
        t[3, l] = n3 if keep else s3
    for l in range(L):
        x, _, _, accepted = _layer(r[l])
        out[l] = x if accepted else np.nan  # NaN: rejected
    for l in range(L):
        if live[l] and out[l] != out[l]:
            for k in range(4):
                one[k] = t[k, l]
            out[l] = _normal_from(one, 0, r[l])
            for k in range(4):
                t[k, l] = one[k]


@inner
def normal_pair(s, w=0):
    """Two independent standard normals (two :func:`normal` draws, in order)."""
    a = normal(s, w)
    return a, normal(s, w)


@inner
def fill_normal(s, z, w=0):
    """Fill the float64 array ``z`` with standard normals from state ``s`` (or row ``w`` of a table)."""
    for i in range(z.shape[0]):
        z[i] = normal(s, w)


def seed_states(seed, n: int) -> np.ndarray:
    """(n, 4) uint64 xoshiro states, one per walker, from SeedSequence(seed).spawn(n).

    A state of all zeros is a fixed point of xoshiro; SeedSequence output makes it
    astronomically unlikely, and it is replaced if it ever occurs.
    """
    children = np.random.SeedSequence(seed).spawn(n)
    out = np.empty((n, 4), dtype=np.uint64)
    for i, c in enumerate(children):
        st = c.generate_state(4, dtype=np.uint64)
        if not st.any():  # pragma: no cover
            st[0] = np.uint64(0x9E3779B97F4A7C15)
        out[i] = st
    return out
