"""Per-walker random numbers: xoshiro256** (Blackman & Vigna) with Box-Muller normals.

Each walker owns a state ``s`` of four uint64 (an array row, ``states[w]``), seeded from
``numpy.random.SeedSequence(seed).spawn(walkers)``, so a walker's stream does not depend on
which thread runs it or on the number of threads.  No shared state.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_U5 = np.uint64(5)
_U9 = np.uint64(9)
_S17 = np.uint64(17)
_S11 = np.uint64(11)
_TWO_PI = 2.0 * np.pi
_INV53 = 1.0 / 9007199254740992.0  # 2^-53


@njit
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit
def next_u64(s):
    """Next uint64 of the xoshiro256** state ``s`` (uint64[4], updated in place)."""
    s0 = s[0]
    s1 = s[1]
    s2 = s[2]
    s3 = s[3]
    result = _rotl(s1 * _U5, 7) * _U9
    t = s1 << _S17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    s[0] = s0
    s[1] = s1
    s[2] = s2
    s[3] = s3
    return result


@njit
def uniform(s):
    """Uniform on (0, 1] with 53 random bits (never 0, so log() is safe)."""
    return (np.float64(next_u64(s) >> _S11) + 1.0) * _INV53


@njit
def normal_pair(s):
    """Two independent standard normals (Box-Muller)."""
    r = np.sqrt(-2.0 * np.log(uniform(s)))
    t = _TWO_PI * uniform(s)
    return r * np.cos(t), r * np.sin(t)


@njit
def fill_normal(s, z):
    """Fill the float64 array ``z`` with standard normals from state ``s``."""
    n = z.shape[0]
    i = 0
    while i + 1 < n:
        a, b = normal_pair(s)
        z[i] = a
        z[i + 1] = b
        i += 2
    if i < n:
        a, b = normal_pair(s)
        z[i] = a


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
