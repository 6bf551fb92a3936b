"""Numbers for people (HTML reports and figure labels; the terminal has its own in the summaries): a few
significant digits, intervals with as many decimals as their width needs, speedups with their unit."""
from __future__ import annotations

import math

DASH = "–"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def num(v, sig: int = 3) -> str:
    """``v`` to ``sig`` significant digits without exponent between 1e-3 and 1e6 (0.0123, 12.3, 123456);
    ints as they are; None/NaN as a dash.  ``num(0.98712) == "0.987"``, ``num(1234.5) == "1234"``."""
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(v):
        return DASH
    if math.isinf(v) or v == 0:
        return "0" if v == 0 else str(v)
    a = abs(v)
    if a < 1e-3 or a >= 1e6:
        mant, exp = f"{v:.{max(sig - 1, 0)}e}".split("e")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        return f"{mant}e{int(exp)}"
    if a >= 10 ** (sig - 1):
        return f"{v:.0f}"
    dec = sig - 1 - math.floor(math.log10(a))
    s = f"{v:.{dec}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def interval_decimals(lo, hi, sig: int = 1, at_least: int = 0) -> int:
    """Decimals that show the width ``hi - lo`` with ``sig`` significant digits, so the ends of a narrow interval
    never print alike ([0.351, 0.361], not [0.35, 0.36]), and the larger end with at least two ([0.80, 0.95])."""
    if not (_finite(lo) and _finite(hi)):
        return at_least
    w = abs(float(hi) - float(lo))
    big = max(abs(float(lo)), abs(float(hi)), 1e-12)
    scale = w if w > 0 else big * 1e-3
    ends = 1 - math.floor(math.log10(big))  # the larger end keeps two significant digits
    return int(min(10, max(at_least, ends, sig - 1 - math.floor(math.log10(scale)))))


def interval(lo, hi, sig: int = 1) -> str:
    """``[lo, hi]`` with :func:`interval_decimals` decimals (a dash when missing)."""
    if not (_finite(lo) and _finite(hi)):
        return DASH
    d = interval_decimals(lo, hi, sig)
    return f"[{float(lo):.{d}f}, {float(hi):.{d}f}]"


def speedup(x) -> str:
    """A speed ratio with its unit: ``"8.9x"``."""
    return DASH if not _finite(x) else f"{num(x, 2)}x"


#: Axis labels of swept keys.
SWEEP_AXIS = {"fine.field": "μ (fine field)", "data.samples": "S_f (data size)", "coarse.level": "l_c (coarse level)",
              "fine.beta": "β (inverse temperature)", "fine.coupling": "J_0 (coupling)"}


def sweep_axis_label(key: str, fallback: str | None = None) -> str:
    return SWEEP_AXIS.get(key, fallback or key)
