"""Model files: TOML parsing, ``--set`` overrides and validation.

A model file is a TOML document whose sections map one-to-one onto the frozen dataclasses
below.  Unknown sections or keys, wrong types and out-of-range values raise
:class:`~bayescg.errors.ModelFileError` with a one-line message naming the file, section
and key.  The schema *is* the dataclasses: a field's type annotation gives its type and
``metadata["check"]`` its range, so there is one place to add a key.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ModelFileError

#: Model-file format version this release reads and writes; newer files are rejected.
FORMAT_VERSION = 1


# --- range checks (return an error string or None) --------------------------------------
def positive(v):
    return None if v > 0 else "must be > 0"


def nonnegative(v):
    return None if v >= 0 else "must be >= 0"


def at_least(lo):
    def check(v):
        return None if v >= lo else f"must be >= {lo}"
    return check


def between(lo, hi):
    def check(v):
        return None if lo <= v <= hi else f"must be in [{lo}, {hi}]"
    return check


def one_of(*choices):
    def check(v):
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"
    return check


def each(check1):
    def check(v):
        for x in v:
            msg = check1(x)
            if msg:
                return f"entries {msg} (got {x!r})"
        return None
    return check


def _f(default=dataclasses.MISSING, check=None, doc=""):
    kw = {"metadata": {"check": check, "doc": doc}}
    if isinstance(default, (list, dict)):
        kw["default_factory"] = (lambda d=default: type(d)(d))
    else:
        kw["default"] = default
    return field(**kw)


def _delta_ratio(v):
    return None if 0.5 <= v <= 2.0 and abs(v - 1.0) >= 0.05 else "must be in [0.5, 2] and at least 5 % away from 1"


def _integrator_name(v):
    from .kernels.registry import INTEGRATORS  # the registry is the one list of integrators

    return one_of(*INTEGRATORS)(v)


def _kick_noise(v):
    """A positive number or a square list of lists of numbers (SPD is checked by simulate)."""
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    if num(v):
        return None if v > 0 else "must be > 0"
    if (isinstance(v, list) and v and all(isinstance(r, list) and len(r) == len(v) and all(num(x) for x in r)
                                          for r in v)):
        return None
    return "must be a positive number or a square matrix (list of lists of numbers)"


# --- pillar 1 ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PotentialSection:
    expression: Optional[str] = _f(None, doc="V(q) in sympy syntax (or give module, or learn from [trajectory])")
    module: Optional[str] = _f(None, doc="Python file (path relative to the model file) defining V(q) and optionally grad(q)")
    variables: list[str] = _f(["q"], doc="1 to 3 variable names")
    reference: Optional[str] = _f(None, doc="U_k to compare against (sympy syntax)")
    domain: Optional[list[list[float]]] = _f(None, doc="[[lo, hi], ...] per variable for grids")


@dataclass(frozen=True)
class SimulationSection:
    delta: float = _f(check=positive, doc="step size of the damped map (3.2)")
    gamma: float = _f(0.1, check=positive, doc="scalar friction")
    steps: int = _f(10_000_000, check=positive, doc="total steps summed over walkers")
    walkers: int = _f(16, check=positive, doc="independent walkers")
    seed: int = _f(1, check=nonnegative, doc="seed of initial conditions and noise")
    burn_in: float = _f(0.1, check=between(0.0, 0.9), doc="fraction of each walker's steps discarded")
    init_mean: list[float] = _f([], doc="mean of initial q (default: 0)")
    init_sd: float = _f(1.0, check=positive, doc="sd of initial q and p")
    bins: int = _f(200, check=at_least(4), doc="histogram bins per dimension")
    max_samples: int = _f(100_000, check=nonnegative, doc="cap on stored thinned samples")
    mass: Optional[list[list[float]]] = _f(None, doc="inverse mass matrix A (SPD), default I")
    friction: Optional[list[list[float]]] = _f(None, doc="friction matrix Gamma (SPD), default gamma I")
    auto_gamma: bool = _f(False, doc="choose gamma by pilot runs so that beta_hat is near target_beta")
    target_beta: float = _f(0.6, check=between(0.05, 5.0), doc="beta_hat aimed at by auto_gamma")
    integrator: str = _f("damped", check=_integrator_name,
                         doc="a name of bayescg.kernels.registry.INTEGRATORS: damped (3.2); damped_white ((3.2) + white kick of covariance delta Z); langevin (4.2); hamiltonian (4.1)")
    kick_noise: Any = _f(None, check=_kick_noise, doc="Z of damped_white: a number (d = 1) or a d x d SPD matrix")
    lanes: bool = _f(True, doc="d = 1, 2 damped runs use the SIMD lane kernels (false: exact math.* gradients everywhere)")


@dataclass(frozen=True)
class TrajectorySection:
    path: str = _f(doc=".npz with arrays q and p, each (n,), (n, d) or (walkers, n, d); path relative to the model file")
    delta: Optional[float] = _f(None, check=positive, doc="step of the damped map (3.2) that made the data (finite-delta correction)")
    gamma: Optional[float] = _f(None, check=positive, doc="scalar friction of that run")
    mass: Optional[list[list[float]]] = _f(None, doc="inverse mass matrix A = M^-1 (SPD) of the momenta, default I")
    burn_in: float = _f(0.0, check=between(0.0, 0.9), doc="fraction of each walker's frames discarded")
    bins: int = _f(200, check=at_least(4), doc="histogram bins per dimension")
    max_samples: int = _f(100_000, check=at_least(40), doc="cap on the frames kept for IAT and normality")


@dataclass(frozen=True)
class FitSection:
    knots: Optional[int] = _f(None, check=at_least(4), doc="B-spline knots per dimension (default 40 in 1D; 25 in 2D "
                              "and 12 in 3D, the most these fits take: more is lowered to them with a warning)")
    draws: int = _f(1000, check=positive)
    tune: Optional[int] = _f(None, check=nonnegative, doc="NUTS tuning steps per chain (default 1000; 300 for 2D fits, "
                             "whose Laplace whitening leaves little to adapt: benchmarks/RESULTS_FIT2D.md)")
    chains: int = _f(4, check=positive)
    method: str = _f("nuts", check=one_of("nuts", "map"))
    mass_fraction: float = _f(0.98, check=between(0.5, 1.0), doc="region for reference RMSE")
    seed: Optional[int] = _f(None, check=nonnegative)
    delta_correction: str = _f("fixed_point", check=one_of("fixed_point", "none"),
                               doc="finite-delta correction of U (bayescg.bias, B4): 1D damped-map runs, any mass")
    correction_steps: Optional[int] = _f(None, check=positive,
                                         doc="steps of each white-kick run of the correction (default simulation.steps)")
    correction_iterations: int = _f(6, check=positive, doc="most white-kick runs of the correction")
    correction_min_iterations: int = _f(4, check=positive,
                                        doc="fewest white-kick runs before a 1D correction may stop (at most "
                                            "correction_iterations; 2D stops at its first converged update)")
    correction_min_ratio: float = _f(2.0, check=nonnegative,
                                     doc="apply the correction only when its RMS over the mass region is at least this "
                                         "multiple of its Monte Carlo se's RMS (bayescg.bias.correction_significance; "
                                         "0 applies it always)")
    delta_check: Optional[float] = _f(None, check=_delta_ratio,
                                      doc="ratio r: learn again at delta x r (steps / r, seed + 1) and warn when the two "
                                          "corrected U's differ beyond their bands over most of the mass region "
                                          "(bayescg.pipeline.delta_consistency; 1D; about doubles the run)")


@dataclass(frozen=True)
class ScalesSection:
    deltas: list[float] = _f([], check=each(positive))


@dataclass(frozen=True)
class NoiseSection:
    steps: Optional[int] = _f(None, check=positive, doc="steps per design (default: simulation.steps)")
    calibrate: bool = _f(True)
    z_draws: int = _f(3, check=nonnegative, doc="posterior draws of Z re-run and re-fitted to measure (and add) "
                      "Z's part of U's band (d >= 2, calibrated runs; 0: off)")


@dataclass(frozen=True)
class SurrogateSection:
    delta: float = _f(0.1, check=positive)
    reference_step: float = _f(5e-4, check=positive)
    trajectories: int = _f(4000, check=positive)
    time: float = _f(50.0, check=positive)
    init: str = _f("normal", check=one_of("normal", "uniform"))
    init_q: list[float] = _f([-2.0, 1.0], doc="normal: [mean, sd]; uniform: [lo, hi]")
    init_p: list[float] = _f([0.0, 1.0], doc="normal: [mean, sd]; uniform: [lo, hi]")
    init_centres: Optional[list[list[float]]] = _f(None, doc="d >= 2: points (K, d); trajectory m starts at centre m mod K plus the init_q offset from its mean (normal) or mid-range (uniform)")
    compare_expression: Optional[str] = _f(None, doc="extra potential to compare against")
    posterior_draws: int = _f(10, check=nonnegative, doc="U_k draws for predictive bands (0: none)")
    phase_trajectories: int = _f(3, check=positive, doc="Hamiltonian orbits compared in phase space")
    equilibrium_fraction: float = _f(0.5, check=between(0.05, 1.0), doc="last fraction of T used as equilibrium")
    learn_delta: Optional[float] = _f(None, check=positive, doc="step of (3.2) that learns U_k for the surrogate (default simulation.delta)")
    gamma: Optional[float] = _f(None, check=positive, doc="friction of the compared Langevin runs (4.2) (default simulation.gamma)")


# --- pillar 2 ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FineSection:
    sites: int = _f(32, check=at_least(2))
    beta: float = _f(1.0, check=positive)
    field: float = _f(0.0)
    coupling: float = _f(1.0)
    interaction_length: int = _f(1, check=positive)
    exponent: float = _f(0.0, check=nonnegative)
    boundary: str = _f("periodic", check=one_of("periodic", "open"))
    normalization: str = _f("power", check=one_of("power", "sum", "slides"),
                            doc="J_k for L_f > 1: power J_0 k^-a, sum (sum_k J_k = J_0), slides (K/(L k^a))")


@dataclass(frozen=True)
class DataSection:
    samples: int = _f(100, check=positive)
    seed: int = _f(1, check=nonnegative)
    file: Optional[str] = _f(None, doc="user data: .npy or text, one configuration of +-1 per row")


@dataclass(frozen=True)
class CoarseSection:
    level: int = _f(2, check=positive)
    model: str = _f("110")
    field: str = _f("fine", check=one_of("fine", "none"), doc="coarse potential's -mu sum X: fine mu or none")


@dataclass(frozen=True)
class InferenceSection:
    methods: list[str] = _f(["em", "laplace", "nuts", "gibbs", "relent"],
                            check=each(one_of("em", "exact_em", "laplace", "laplace_slides", "nuts", "gibbs",
                                                  "relent")))
    draws: int = _f(1000, check=positive)
    tune: int = _f(1000, check=nonnegative)
    chains: int = _f(4, check=positive)
    em_iterations: int = _f(200, check=positive)
    coarse_samples: int = _f(200, check=positive, doc="S_c")
    posterior_samples: int = _f(50, check=positive, doc="S_q")
    prediction_samples: int = _f(20000, check=positive, doc="S_pred")
    seed: int = _f(1, check=nonnegative)
    prior_sd: float = _f(2.0, check=positive, doc="sd of the Normal prior on theta_c")
    sampler: str = _f("auto", check=one_of("auto", "nutpie", "pymc"), doc="NUTS backend")
    likelihood: str = _f("op", check=one_of("op", "graph"), doc="marginal likelihood: numba Op or pytensor graph")
    max_lag: int = _f(0, check=nonnegative, doc="largest lag of R_l (0: n_f // 2)")
    candidates: list[str] = _f([], doc="coarse models [abc] for LOO stacking and their predictive checks "
                                       "(ising.json model_averaging)")


@dataclass(frozen=True)
class SweepSection:
    key: str = _f(doc="dotted key to sweep, e.g. fine.field")
    values: list[Any] = _f([])


@dataclass(frozen=True)
class Model:
    """A parsed, validated model file."""

    name: str
    path: Optional[str] = None
    format: int = FORMAT_VERSION
    description: str = ""
    potential: Optional[PotentialSection] = None
    simulation: Optional[SimulationSection] = None
    trajectory: Optional[TrajectorySection] = None
    fit: Optional[FitSection] = None
    scales: Optional[ScalesSection] = None
    noise: Optional[NoiseSection] = None
    surrogate: Optional[SurrogateSection] = None
    fine: Optional[FineSection] = None
    data: Optional[DataSection] = None
    coarse: Optional[CoarseSection] = None
    inference: Optional[InferenceSection] = None
    sweep: Optional[SweepSection] = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"potential"`` (pillar 1) or ``"ising"`` (pillar 2)."""
        return "ising" if self.fine is not None else "potential"

    def require(self, section: str):
        """The section ``section``, else a ModelFileError that names the command for this kind of model."""
        value = getattr(self, section)
        if value is None:
            hint = ""
            if self.kind == "ising" and section in PILLAR1_SECTIONS:
                hint = "; this is an Ising chain model ([fine] section): run it with `bayescg ising`"
            elif self.kind == "potential" and section in PILLAR2_SECTIONS:
                hint = ("; this is an effective-potential model ([potential] section): run it with `bayescg learn` "
                        "(or simulate, scales, noise, surrogate, run)")
            raise ModelFileError(f"{self.path or self.name}: this command needs a [{section}] section{hint}")
        return value

    def resolve(self, relpath: str) -> Path:
        """A path named in the model file: relative paths are relative to the model file's folder."""
        p = Path(relpath).expanduser()
        if p.is_absolute() or not self.path:
            return p
        return Path(self.path).parent / p

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "raw" and v is not None}


#: Sections of the two kinds of model (pillar 1: effective potentials; pillar 2: Ising chains).
PILLAR1_SECTIONS = ("potential", "simulation", "trajectory", "fit", "scales", "noise", "surrogate")
PILLAR2_SECTIONS = ("fine", "data", "coarse", "inference", "sweep")

SECTIONS: dict[str, type] = {
    "potential": PotentialSection, "simulation": SimulationSection, "trajectory": TrajectorySection,
    "fit": FitSection,
    "scales": ScalesSection, "noise": NoiseSection, "surrogate": SurrogateSection,
    "fine": FineSection, "data": DataSection, "coarse": CoarseSection,
    "inference": InferenceSection, "sweep": SweepSection,
}


# --- coercion ------------------------------------------------------------------------------
def _coerce(value, tp, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ModelFileError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ModelFileError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return int(value)  # 1e7 from --set or TOML
        raise ModelFileError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelFileError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ModelFileError(f"{where} must be finite, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ModelFileError(f"{where} must be a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ModelFileError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"unsupported schema type {tp!r}")  # pragma: no cover - schema bug


#: Example list values for error messages: by key, else by type.
_LIST_EXAMPLES = {"inference.methods": '["em", "laplace"]', "inference.candidates": '["110", "120"]',
                  "potential.variables": '["x", "y"]', "potential.domain": "[[-3.0, 3.0]]",
                  "simulation.kick_noise": "[[2.0]]", list[float]: "[0.5, 0.25]", list[str]: '["a", "b"]',
                  list[list[float]]: "[[2.0]]", list[Any]: "[0.0, 0.5]"}


def _list_hint(key: str, tp) -> str:
    """How to write a list value of ``key`` in the model file and on the command line, where the shell would
    otherwise eat the brackets or quotes (TOML strings inside a list need their double quotes)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    tp = args[0] if typing.get_origin(tp) is typing.Union and args else tp
    example = _LIST_EXAMPLES.get(key) or _LIST_EXAMPLES.get(tp)
    if example is None:
        return ""
    section, name = key.split(".", 1)
    rows = " (one row per variable)" if example.startswith("[[") else ""
    return (f"; write a list in brackets{rows}: {name} = {example} in [{section}], or quoted for the shell: "
            f"--set {key}='{example}'")


def _build_section(name: str, cls: type, table: Any, where: str):
    if not isinstance(table, dict):
        raise ModelFileError(f"{where}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ModelFileError(f"{where}: unknown key {name}.{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for key, f in fields.items():
        loc = f"{where}: {name}.{key}"
        if key in table:
            hint = _list_hint(f"{name}.{key}", hints[key])
            try:
                value = _coerce(table[key], hints[key], loc)
            except ModelFileError as exc:
                raise ModelFileError(f"{exc}{hint}") from None
            check = f.metadata.get("check")
            if check is not None and value is not None:
                msg = check(value)
                if msg:
                    hint = hint if ("list" in msg or "matrix" in msg) else ""
                    raise ModelFileError(f"{loc} {msg}, got {table[key]!r}{hint}")
            kwargs[key] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ModelFileError(f"{where}: missing required key {name}.{key}")
    return cls(**kwargs)


def parse_value(text: str):
    """Parse a ``--set`` value as a TOML value; bare words become strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: list[str] | dict | None, where: str = "--set") -> dict:
    """Return a copy of ``raw`` with dotted ``KEY=VALUE`` overrides applied."""
    import copy

    raw = copy.deepcopy(raw)
    if not overrides:
        return raw
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ModelFileError(f"{where}: expected KEY=VALUE, got {item!r}")
            key, text = item.split("=", 1)
            parsed.append((key.strip(), parse_value(text.strip())))
        items = parsed
    for key, value in items:
        parts = key.split(".")
        if not all(parts):
            raise ModelFileError(f"{where}: bad key {key!r}")
        if len(parts) == 1:
            if parts[0] not in {"name", "format", "description"}:
                raise ModelFileError(f"{where}: unknown key {key!r} (use section.key)")
            raw[parts[0]] = value
            continue
        if len(parts) != 2:
            raise ModelFileError(f"{where}: bad key {key!r} (use section.key)")
        section, name = parts
        if section not in SECTIONS:
            raise ModelFileError(f"{where}: unknown section {section!r} in {key!r}")
        raw.setdefault(section, {})[name] = value
    return raw


def model_from_dict(raw: dict, where: str = "<model>", path: str | None = None) -> Model:
    """Validate a model given as a dict (the parsed TOML)."""
    if not isinstance(raw, dict):
        raise ModelFileError(f"{where}: a model must be a table")
    top = {"name", "format", "description"}
    unknown = sorted(k for k in raw if k not in top and k not in SECTIONS)
    if unknown:
        raise ModelFileError(f"{where}: unknown key or section {unknown[0]!r}")
    fmt = _coerce(raw.get("format", FORMAT_VERSION), int, f"{where}: format")
    if fmt > FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: format {fmt} is newer than this bayescg reads ({FORMAT_VERSION}); upgrade bayescg")
    if fmt < 1:
        raise ModelFileError(f"{where}: format must be >= 1, got {fmt}")
    name = raw.get("name", Path(path).stem if path else "model")
    name = _coerce(name, str, f"{where}: name")
    sections = {s: _build_section(s, SECTIONS[s], raw[s], where) for s in SECTIONS if s in raw}
    if "potential" in sections and "fine" in sections:
        raise ModelFileError(f"{where}: a model is either a potential ([potential]) or an Ising chain ([fine]), not both")
    if "potential" not in sections and "fine" not in sections:
        raise ModelFileError(f"{where}: needs a [potential] or a [fine] section")
    if "potential" in sections:
        pot = sections["potential"]
        if not 1 <= len(pot.variables) <= 3:
            raise ModelFileError(f"{where}: potential.variables must name 1 to 3 variables, got {len(pot.variables)}")
        if len(set(pot.variables)) != len(pot.variables):
            raise ModelFileError(f"{where}: potential.variables has duplicates")
        d = len(pot.variables)
        if pot.domain is not None and (len(pot.domain) != d or any(len(r) != 2 or r[0] >= r[1] for r in pot.domain)):
            raise ModelFileError(f"{where}: potential.domain must be {d} pairs [lo, hi] with lo < hi")
        given = [k for k in ("expression", "module") if getattr(pot, k) is not None]
        if len(given) > 1:
            raise ModelFileError(f"{where}: give potential.expression or potential.module, not both")
        if "trajectory" in sections:
            if "simulation" in sections:
                raise ModelFileError(f"{where}: a model learns from [simulation] or from [trajectory], not both")
            if sections["trajectory"].mass is not None:
                _check_spd(sections["trajectory"].mass, d, f"{where}: trajectory.mass")
        elif not given:
            raise ModelFileError(f"{where}: [potential] needs expression or module (or a [trajectory] to learn from)")
        sim = sections.get("simulation")
        if sim is not None:
            if sim.init_mean and len(sim.init_mean) != d:
                raise ModelFileError(f"{where}: simulation.init_mean needs {d} entries, got {len(sim.init_mean)}")
            for key in ("mass", "friction"):
                mat = getattr(sim, key)
                if mat is not None:
                    _check_spd(mat, d, f"{where}: simulation.{key}")
    if "fine" in sections:
        fine = sections["fine"]
        coarse = sections.get("coarse") or CoarseSection()
        if fine.interaction_length >= fine.sites:
            raise ModelFileError(
                f"{where}: fine.interaction_length ({fine.interaction_length}) must be shorter than the chain ({fine.sites} sites)")
        if fine.sites % coarse.level:
            raise ModelFileError(f"{where}: fine.sites ({fine.sites}) is not divisible by coarse.level ({coarse.level})")
        code = coarse.model
        if len(code) != 3 or not code.isdigit() or code[0] not in "01" or code[2] not in "01" or code[1] == "0" and code == "000":
            raise ModelFileError(f"{where}: unknown coarse.model {code!r} (three digits abc: a,c in 0/1, b = pair length)")
    return Model(name=name, path=path, format=fmt, description=str(raw.get("description", "")),
                 raw=raw, **sections)


def _check_spd(mat, d: int, where: str):
    import numpy as np

    a = np.asarray(mat, dtype=float)
    if a.shape != (d, d):
        raise ModelFileError(f"{where} must be a {d}x{d} matrix, got shape {a.shape}")
    if not np.allclose(a, a.T):
        raise ModelFileError(f"{where} must be symmetric")
    if np.linalg.eigvalsh(a).min() <= 0:
        raise ModelFileError(f"{where} must be positive definite")


def load_model(path: str | Path, overrides: list[str] | dict | None = None) -> Model:
    """Read, override and validate a TOML model file."""
    p = Path(path)
    where = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{where}: is a directory, not a model file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{where}: cannot read ({exc.__class__.__name__}: {exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelFileError(f"{where}: not valid TOML ({exc})") from None
    raw = apply_overrides(raw, overrides)
    return model_from_dict(raw, where=where, path=where)
