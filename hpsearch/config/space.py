"""The search space: a spec's [space] as Optuna define-by-run calls yielding a trial config.

    config = suggest_config(trial, spec, seed=trial_seed(spec.train.seed, trial.number))

Parameters are conditional: a trial that picked SGD is never asked for betas, one that picked
the constant schedule is never asked for gamma. Keys a study leaves out get torch's defaults,
so every trial config spells out every argument of its optimizer and scheduler.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .catalog import (
    OPTIMIZER_DEFAULTS,
    OPTIMIZER_KEYS,
    OPTIMIZERS,
    SCHEDULE_DEFAULTS,
    SCHEDULE_KEYS,
    default_step_size,
    keys_used_by,
)
from .spec import StudySpec
from .values import FloatRange, IntRange

if TYPE_CHECKING:
    import optuna


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A trial's training seed: a fixed function of the study's seed and the trial number."""
    digest = hashlib.sha256(f"{study_seed}/{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _entry(spec: StudySpec, key: str, owner: str) -> Any:
    """The space's entry for `key`, or the default it has for `owner` (an optimizer or schedule)."""
    given = getattr(spec.space, key)
    if given is not None:
        return given
    if owner in OPTIMIZER_DEFAULTS:
        return OPTIMIZER_DEFAULTS[owner][key]
    if key == "step_size":
        return default_step_size(spec.train.epochs)
    return SCHEDULE_DEFAULTS[owner][key]


def suggest_config(trial: "optuna.Trial", spec: StudySpec, seed: int) -> dict[str, Any]:
    """Sample one trial config through `trial.suggest_*` (the order of calls is fixed)."""
    space = spec.space

    def pick(key: str, value: Any) -> Any:
        if isinstance(value, (FloatRange, IntRange)):
            if isinstance(value, IntRange):
                return trial.suggest_int(key, value.low, value.high, log=value.log, step=value.step or 1)
            return trial.suggest_float(key, value.low, value.high, log=value.log, step=value.step)
        if isinstance(value, list):
            return value[0] if len(value) == 1 else trial.suggest_categorical(key, value)
        return value

    name = pick("optimizer", space.optimizer)
    optimizer: dict[str, Any] = {"name": name}
    for key in OPTIMIZER_KEYS[name]:
        value = pick(key, _entry(spec, key, name))
        if key == "beta1":
            optimizer["betas"] = [value]
        elif key == "beta2":
            optimizer["betas"].append(value)
        else:
            optimizer[key] = value

    kind = pick("schedule", space.schedule)
    warmup = pick("warmup_epochs", space.warmup_epochs)
    epochs = spec.train.epochs
    schedule: dict[str, Any] = {"name": kind}
    for key in SCHEDULE_KEYS[kind]:
        schedule[key] = pick(key, _entry(spec, key, kind))
    if kind == "cosine":
        # The decay spans the epochs after warmup, ending at eta_min on the last one.
        schedule = {"name": kind, "T_max": epochs - warmup, "eta_min": schedule["eta_min"]}
    schedule["warmup_epochs"] = warmup

    return {
        "optimizer": optimizer,
        "schedule": schedule,
        "batch_size": pick("batch_size", spec.batch_sizes),
        "epochs": epochs,
        "seed": seed,
        "data_seed": spec.train.seed,
    }


def describe(spec: StudySpec) -> list[tuple[str, str, str]]:
    """The resolved space, one row per key: (key, values, which trials it applies to)."""
    space = spec.space
    optimizers = _as_list(space.optimizer)
    schedules = _as_list(space.schedule)
    rows = [
        ("optimizer", _show(space.optimizer), "all"),
        ("lr", _show(space.lr), "all"),
    ]
    for key in ("momentum", "nesterov", "beta1", "beta2", "eps", "alpha", "weight_decay"):
        users = [o for o in (keys_used_by(key) or OPTIMIZERS) if o in optimizers]
        if not users:
            continue
        given = getattr(space, key)
        if given is None:
            defaults = sorted({(OPTIMIZER_DEFAULTS[o][key], o) for o in users}, key=str)
            shown = ", ".join(f"{_show(v)} ({o})" for v, o in defaults)
            shown = f"default: {shown}" if len({v for v, _ in defaults}) > 1 else (
                f"{_show(defaults[0][0])} (default)"
            )
        else:
            shown = _show(given)
        rows.append((key, shown, ", ".join(users)))
    rows.append(("batch_size", _show(spec.batch_sizes), "all"))
    rows.append(("schedule", _show(space.schedule), "all"))
    epochs = spec.train.epochs
    for key in ("step_size", "gamma", "eta_min"):
        users = [s for s in keys_used_by(key) if s in schedules]
        if not users:
            continue
        given = getattr(space, key)
        if given is not None:
            shown = _show(given)
        elif key == "step_size":
            shown = f"{default_step_size(epochs)} (epochs // 3)"
        else:
            shown = ", ".join(f"{_show(SCHEDULE_DEFAULTS[s][key])} ({s})" for s in users)
        rows.append((key, shown, ", ".join(users)))
    if "cosine" in schedules:
        rows.append(("T_max", "epochs - warmup_epochs", "cosine"))
    rows.append(("warmup_epochs", _show(space.warmup_epochs), "all"))
    return rows


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _show(value: Any) -> str:
    if isinstance(value, (FloatRange, IntRange)):
        text = f"{value.low:g} .. {value.high:g}"
        if value.log:
            text += " (log)"
        if value.step:
            text += f" step {value.step:g}"
        return text
    if isinstance(value, list):
        return "one of " + ", ".join(_show(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def params_of(config: Any, spec: StudySpec, where: str = "config") -> dict[str, Any]:
    """The Optuna params under which `suggest_config` gives back `config` (for warm starts).

    Raises ConfigError, naming the key, when the config lies outside the study's space.
    """
    from ..errors import ConfigError

    space = spec.space
    params: dict[str, Any] = {}

    def put(key: str, value: Any, allowed: Any, path: str) -> None:
        if isinstance(allowed, (FloatRange, IntRange)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not allowed.low <= value <= allowed.high:
                raise ConfigError(f"{where}.{path}: {value!r} is outside space.{key} ({_show(allowed)})")
            params[key] = value
        elif isinstance(allowed, list):
            if value not in allowed or type(value) is not type(allowed[allowed.index(value)]):
                raise ConfigError(f"{where}.{path}: {value!r} is not among space.{key} ({_show(allowed)})")
            if len(allowed) > 1:
                params[key] = value
        elif value != allowed or isinstance(value, bool) != isinstance(allowed, bool):
            raise ConfigError(f"{where}.{path}: {value!r} differs from space.{key}, which is fixed at {_show(allowed)}")

    try:
        optimizer, schedule = dict(config["optimizer"]), dict(config["schedule"])
        name, kind = optimizer["name"], schedule["name"]
        put("optimizer", name, space.optimizer, "optimizer.name")
        for key in OPTIMIZER_KEYS[name]:
            allowed = _entry(spec, key, name)
            value = optimizer["betas"][("beta1", "beta2").index(key)] if key in ("beta1", "beta2") else optimizer[key]
            put(key, value, allowed, f"optimizer.{'betas' if key.startswith('beta') else key}")
        put("schedule", kind, space.schedule, "schedule.name")
        warmup = schedule.get("warmup_epochs", 0)
        put("warmup_epochs", warmup, space.warmup_epochs, "schedule.warmup_epochs")
        epochs = spec.train.epochs
        for key in SCHEDULE_KEYS[kind]:
            put(key, schedule[key], _entry(spec, key, kind), f"schedule.{key}")
        if kind == "cosine" and schedule.get("T_max") != epochs - warmup:
            raise ConfigError(f"{where}.schedule.T_max: must be epochs - warmup_epochs ({epochs - warmup}), got {schedule.get('T_max')!r}")
        put("batch_size", config["batch_size"], spec.batch_sizes, "batch_size")
        if config.get("epochs", epochs) != epochs:
            raise ConfigError(f"{where}.epochs: the study trains {epochs} epochs, got {config.get('epochs')!r}")
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"{where}: not a trial config ({type(e).__name__}: {e}); export it with `hpsearch export`") from None
    return params
