"""The optimizers and learning-rate schedules hpsearch searches over.

Plain data shared by the study-file validator, the search space, the optimizer builder and
the cohort engine, so that "which arguments does RMSprop take" and "what is Adagrad's
default eps" are answered in one place. Nothing here imports torch, optuna or pydantic.

Each optimizer lists its search-space keys. A key is usually the torch constructor argument
of the same name; `beta1`/`beta2` become `betas`, `eta_minus`/`eta_plus` become `etas`,
`step_size_min`/`step_size_max` become `step_sizes`, and `line_search = "none"` becomes
`line_search_fn = None` for L-BFGS. A flat `[space]` key reaches every listed optimizer that
takes a key of that name, except where a name means something else for one optimizer
(RMSprop's `momentum`, ASGD's `alpha`): those are set only in the optimizer's own table,
`[space.optimizers.NAME]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

# Optimizers, classes and user factories named by import path: "package.module:Name".
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Key:
    """One search-space key of an optimizer or schedule."""

    name: str
    rule: str  # how its values are checked: a name in config.values.RULES
    default: Any  # torch's default, unless said otherwise
    flat: bool = True  # a flat [space] key of this name reaches it


@dataclass(frozen=True)
class Optimizer:
    """An optimizer hpsearch knows by name."""

    name: str
    cls: str  # the class, as an import path (torch is not imported here)
    keys: tuple[Key, ...]
    # How a cohort trains it: "vectorized" (one update rule for all its members),
    # "member" (torch's own class, member by member) or "alone" (one trial at a time).
    cohort: str = "vectorized"


def _k(name: str, rule: str, default: Any, flat: bool = True) -> Key:
    return Key(name, rule, default, flat)


_LR = "positive"
_BETAS = (_k("beta1", "unit", 0.9), _k("beta2", "unit", 0.999))
_EPS8 = _k("eps", "positive", 1e-8)
_WD0 = _k("weight_decay", "nonnegative", 0.0)

_OPTIMIZERS = (
    Optimizer("sgd", "torch.optim:SGD", (_k("lr", _LR, 1e-3), _WD0)),
    # torch's momentum default is 0, which would make this plain SGD: hpsearch's is 0.9.
    Optimizer("momentum", "torch.optim:SGD", (
        _k("lr", _LR, 1e-3), _k("momentum", "open_unit", 0.9), _k("nesterov", "flag", False), _WD0,
        _k("dampening", "closed_unit", 0.0),
    )),
    Optimizer("adagrad", "torch.optim:Adagrad", (
        _k("lr", _LR, 0.01), _k("eps", "positive", 1e-10), _WD0, _k("lr_decay", "nonnegative", 0.0),
        _k("initial_accumulator_value", "nonnegative", 0.0),
    )),
    Optimizer("rmsprop", "torch.optim:RMSprop", (
        _k("lr", _LR, 0.01), _k("alpha", "unit", 0.99), _EPS8, _WD0, _k("centered", "flag", False),
        _k("momentum", "unit", 0.0, flat=False),
    )),
    Optimizer("adam", "torch.optim:Adam", (_k("lr", _LR, 1e-3), *_BETAS, _EPS8, _WD0, _k("amsgrad", "flag", False))),
    Optimizer("adamw", "torch.optim:AdamW", (
        _k("lr", _LR, 1e-3), *_BETAS, _EPS8, _k("weight_decay", "nonnegative", 0.01), _k("amsgrad", "flag", False),
    )),
    Optimizer("adadelta", "torch.optim:Adadelta", (
        _k("lr", _LR, 1.0), _k("rho", "closed_unit", 0.9), _k("eps", "positive", 1e-6), _WD0,
    )),
    Optimizer("adamax", "torch.optim:Adamax", (_k("lr", _LR, 2e-3), *_BETAS, _EPS8, _WD0)),
    Optimizer("nadam", "torch.optim:NAdam", (
        _k("lr", _LR, 2e-3), *_BETAS, _EPS8, _WD0, _k("momentum_decay", "nonnegative", 4e-3),
        _k("decoupled_weight_decay", "flag", False),
    )),
    Optimizer("radam", "torch.optim:RAdam", (
        _k("lr", _LR, 1e-3), *_BETAS, _EPS8, _WD0, _k("decoupled_weight_decay", "flag", False),
    )),
    Optimizer("asgd", "torch.optim:ASGD", (
        _k("lr", _LR, 0.01), _k("lambd", "nonnegative", 1e-4), _k("alpha", "nonnegative", 0.75, flat=False),
        _k("t0", "nonnegative", 1e6), _WD0,
    )),
    Optimizer("rprop", "torch.optim:Rprop", (
        _k("lr", _LR, 0.01), _k("eta_minus", "open_unit", 0.5), _k("eta_plus", "above_one", 1.2),
        _k("step_size_min", "positive", 1e-6), _k("step_size_max", "positive", 50.0),
    )),
    # Adafactor's factored second moment and Muon's orthogonalisation are matrix operations
    # per parameter tensor, not element-wise: in a cohort each member runs torch's own class.
    Optimizer("adafactor", "torch.optim:Adafactor", (
        _k("lr", _LR, 0.01), _k("beta2_decay", "nonpositive", -0.8), _k("d", "positive", 1.0), _WD0,
    ), cohort="member"),
    # hpsearch's Muon: torch.optim.Muon for 2-D weights, AdamW for the rest, one lr for both
    # (hence `match_rms_adamw` by default, the scaling that lets Muon share AdamW's lr).
    Optimizer("muon", "hpsearch.optim.muon:Muon", (
        _k("lr", _LR, 1e-3), _k("weight_decay", "nonnegative", 0.1), _k("momentum", "open_unit", 0.95),
        _k("nesterov", "flag", True), _k("ns_steps", "positive_int", 5),
        _k("adjust_lr_fn", "adjust_lr_fn", "match_rms_adamw"),
    ), cohort="member"),
    # Stepped with a closure that re-evaluates the loss: one trial at a time.
    Optimizer("lbfgs", "torch.optim:LBFGS", (
        _k("lr", _LR, 1.0), _k("max_iter", "positive_int", 20), _k("history_size", "positive_int", 100),
        _k("line_search", "wolfe_or_none", "none"),
    ), cohort="alone"),
    Optimizer("newton", "hpsearch.optim.newton:Newton", (
        _k("lr", _LR, 1.0), _k("damping", "nonnegative", 1e-4), _k("line_search", "backtracking_or_none", "backtracking", flat=False),
        _k("hessian_limit", "nonnegative_int", 1000), _k("cg_iters", "positive_int", 50), _k("cg_tol", "positive", 1e-6),
    ), cohort="alone"),
    Optimizer("cg", "hpsearch.optim.cg:ConjugateGradient", (
        _k("lr", _LR, 1.0), _k("method", "cg_method", "polak-ribiere"), _k("line_search", "wolfe_or_none", "strong_wolfe"),
    ), cohort="alone"),
)
CATALOG: dict[str, Optimizer] = {o.name: o for o in _OPTIMIZERS}
OPTIMIZERS: tuple[str, ...] = tuple(CATALOG)
# The words a choice-of-words rule allows (config.values turns them into checks).
WORDS: dict[str, tuple[str, ...]] = {
    "wolfe_or_none": ("strong_wolfe", "none"),
    "backtracking_or_none": ("backtracking", "none"),
    "cg_method": ("polak-ribiere", "fletcher-reeves"),
    "adjust_lr_fn": ("match_rms_adamw", "original"),
    "anneal_strategy": ("cos", "linear"),
}
# Search-space keys that become one constructor argument together: (argument, position).
PAIRED = {
    "beta1": ("betas", 0), "beta2": ("betas", 1),
    "eta_minus": ("etas", 0), "eta_plus": ("etas", 1),
    "step_size_min": ("step_sizes", 0), "step_size_max": ("step_sizes", 1),
}


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: its keys, and whether a linear warmup may precede it."""

    name: str
    keys: tuple[Key, ...]
    warmup: bool = True


_SCHEDULES = (
    Schedule("constant", ()),
    Schedule("step", (_k("step_size", "positive_int", None), _k("gamma", "decay", 0.1))),
    Schedule("exponential", (_k("gamma", "decay", 0.9),)),
    Schedule("cosine", (_k("eta_min", "nonnegative", 0.0),)),
    Schedule("linear", (_k("end_factor", "closed_unit", 0.0),)),
    Schedule("polynomial", (_k("power", "positive", 1.0),)),
    Schedule("cosine-restarts", (_k("T_0", "positive_int", None), _k("T_mult", "positive_int", 1), _k("eta_min", "nonnegative", 0.0))),
    # One-cycle has its own warmup (pct_start); reduce-on-plateau reacts to the metric.
    Schedule("one-cycle", (
        _k("pct_start", "open_unit", 0.3), _k("div_factor", "positive", 25.0), _k("final_div_factor", "positive", 1e4),
        _k("anneal_strategy", "anneal_strategy", "cos"),
    ), warmup=False),
    Schedule("plateau", (
        _k("factor", "open_unit", 0.1), _k("patience", "nonnegative_int", 10), _k("threshold", "nonnegative", 1e-4),
        _k("cooldown", "nonnegative_int", 0), _k("min_lr", "nonnegative", 0.0),
    ), warmup=False),
)
SCHEDULE_CATALOG: dict[str, Schedule] = {s.name: s for s in _SCHEDULES}
SCHEDULES: tuple[str, ...] = tuple(SCHEDULE_CATALOG)


def default_step_size(epochs: int) -> int:
    """The step schedule's default period (and cosine-restarts' first one): a third of the run."""
    return max(1, epochs // 3)


def is_import_path(name: str) -> bool:
    return bool(IMPORT_PATH.match(name))


def optimizer_keys(name: str) -> tuple[Key, ...]:
    """The search-space keys of a built-in optimizer; a class by import path takes `lr`."""
    if name in CATALOG:
        return CATALOG[name].keys
    return (_k("lr", _LR, None),)


def schedule_keys(name: str) -> tuple[Key, ...]:
    return SCHEDULE_CATALOG[name].keys


def flat_keys() -> dict[str, str]:
    """Every flat [space] key an optimizer or schedule takes, with its rule (catalog order)."""
    found: dict[str, str] = {}
    for entry in (*_OPTIMIZERS, *_SCHEDULES):
        for key in entry.keys:
            if key.flat and key.name != "lr":
                if found.setdefault(key.name, key.rule) != key.rule:
                    raise AssertionError(f"flat key {key.name} has two rules")  # a catalog bug
    return found


def keys_used_by(key: str) -> tuple[str, ...]:
    """The optimizers or schedules a flat key reaches (empty: it applies to all)."""
    if key in ("optimizer", "lr", "batch_size", "schedule"):
        return ()
    if key == "warmup_epochs":
        return tuple(s.name for s in _SCHEDULES if s.warmup)
    users = [o.name for o in _OPTIMIZERS if any(k.name == key and k.flat for k in o.keys)]
    users += [s.name for s in _SCHEDULES if any(k.name == key for k in s.keys)]
    return tuple(users)


def in_cohorts(name: str) -> bool:
    """Whether the cohort engine trains this optimizer (classes by import path: one at a time)."""
    return name in CATALOG and CATALOG[name].cohort != "alone"


def arguments(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer's constructor arguments (plus `name`) from its search-space values.

    >>> arguments("rprop", {"lr": 0.01, "eta_minus": 0.5, "eta_plus": 1.2})["etas"]
    [0.5, 1.2]
    """
    config: dict[str, Any] = {"name": name}
    for key, value in values.items():
        if key in PAIRED:
            argument, position = PAIRED[key]
            pair = config.setdefault(argument, [None, None])
            pair[position] = value
        elif key == "line_search" and name == "lbfgs":
            config["line_search_fn"] = None if value == "none" else value
        else:
            config[key] = value
    return config


def argument_of(name: str, key: str) -> str:
    """The constructor argument a search-space key becomes (`beta1` -> `betas`)."""
    if key in PAIRED:
        return PAIRED[key][0]
    return "line_search_fn" if (name, key) == ("lbfgs", "line_search") else key


def search_value(optimizer: Mapping[str, Any], key: str) -> Any:
    """The search-space value behind an optimizer config's arguments (the inverse of `arguments`)."""
    if key in PAIRED:
        argument, position = PAIRED[key]
        return optimizer[argument][position]
    if key == "line_search" and optimizer["name"] == "lbfgs":
        value = optimizer["line_search_fn"]
        return "none" if value is None else value
    return optimizer[key]


def optimizer_argument(optimizer: Mapping[str, Any], argument: str) -> Any:
    """An optimizer config's constructor argument, or the default it has here.

    >>> optimizer_argument({"name": "adagrad", "lr": 0.1}, "eps")
    1e-10
    """
    if argument in optimizer:
        return optimizer[argument]
    defaults = arguments(optimizer["name"], {k.name: k.default for k in optimizer_keys(optimizer["name"])})
    return defaults[argument]


def probe_config(batch_size: int | str = 128, seed: int = 0) -> dict[str, Any]:
    """The trial config hpsearch measures an engine with: the costliest member a space allows
    (Adam with amsgrad keeps three states per parameter, as many as any rule) at learning
    rate 0, for one epoch."""
    adam = arguments("adam", {k.name: k.default for k in CATALOG["adam"].keys})
    return {
        "optimizer": {**adam, "lr": 0.0, "amsgrad": True},
        "schedule": {"name": "constant", "warmup_epochs": 0},
        "batch_size": batch_size,
        "epochs": 1,
        "seed": seed,
        "data_seed": 0,
    }
