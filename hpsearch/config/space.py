"""The search space: a spec's [space] as Optuna define-by-run calls yielding a trial config.

    config = suggest_config(trial, spec, seed=trial_seed(spec.train.seed, trial.number))

Parameters are conditional: a trial that picked SGD is never asked for betas, one that picked
the constant schedule is never asked for gamma. Keys a study leaves out get torch's defaults,
so every trial config spells out every argument of its optimizer and scheduler. A key from an
optimizer's own table is an Optuna parameter named `OPTIMIZER.KEY` (`adam.lr`), so two
optimizers' ranges for one key never share a distribution; flat keys keep their plain names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .catalog import (
    CATALOG,
    SCHEDULE_CATALOG,
    argument_of,
    arguments,
    default_step_size,
    keys_used_by,
    optimizer_keys,
    schedule_keys,
    search_value,
)
from .space_section import table_name
from .spec import StudySpec
from .values import FloatRange, IntRange

if TYPE_CHECKING:
    import optuna


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A trial's training seed: a fixed function of the study's seed and the trial number."""
    digest = hashlib.sha256(f"{study_seed}/{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Entry:
    """Where one key of a trial's optimizer or schedule gets its values."""

    key: str  # the search-space key (lr, beta1, ...)
    param: str  # the Optuna parameter it is sampled as
    value: Any  # a range, a choice (list) or a fixed value
    where: str  # the study-file key, or "default"
    own: bool = False  # the optimizer's own (its table, or a key no flat key reaches)


def optimizer_entries(spec: StudySpec, name: str) -> list[Entry]:
    """The keys an optimizer's trials take, in the order they are sampled."""
    space = spec.space
    table = space.optimizers.get(name, {})
    keys = [k.name for k in optimizer_keys(name)]
    keys += [k for k in table if k not in keys]  # a class's own arguments
    entries = []
    flat = {k.name: k.flat for k in optimizer_keys(name)}
    for key in keys:
        if key in table:
            entries.append(Entry(key, f"{name}.{key}", table[key], f"space.optimizers.{table_name(name)}.{key}", True))
        elif flat.get(key) and getattr(space, key, None) is not None:
            entries.append(Entry(key, key, getattr(space, key), f"space.{key}"))
        else:
            default = next(k.default for k in optimizer_keys(name) if k.name == key)
            param = key if flat.get(key) else f"{name}.{key}"
            entries.append(Entry(key, param, default, "default", not flat.get(key)))
    return entries


def schedule_entries(spec: StudySpec, name: str) -> list[Entry]:
    entries = []
    for key in schedule_keys(name):
        given = getattr(spec.space, key.name)
        if given is not None:
            entries.append(Entry(key.name, key.name, given, f"space.{key.name}"))
        else:
            default = default_step_size(spec.train.epochs) if key.default is None else key.default
            entries.append(Entry(key.name, key.name, default, "default"))
    return entries


def _skipped(name: str, key: str, chosen: dict[str, Any]) -> Any:
    """A key a trial's other choices make moot, with the value it then takes (or None)."""
    if name == "momentum" and key == "dampening" and chosen.get("nesterov"):
        return 0.0  # torch: Nesterov momentum requires zero dampening
    return None


def suggest_config(trial: "optuna.Trial", spec: StudySpec, seed: int) -> dict[str, Any]:
    """Sample one trial config through `trial.suggest_*` (the order of calls is fixed)."""
    space = spec.space

    def pick(param: str, value: Any) -> Any:
        if isinstance(value, (FloatRange, IntRange)):
            if isinstance(value, IntRange):
                return trial.suggest_int(param, value.low, value.high, log=value.log, step=value.step or 1)
            return trial.suggest_float(param, value.low, value.high, log=value.log, step=value.step)
        if isinstance(value, list):
            return value[0] if len(value) == 1 else trial.suggest_categorical(param, value)
        return value

    name = pick("optimizer", space.optimizer)
    values: dict[str, Any] = {}
    for entry in optimizer_entries(spec, name):
        moot = _skipped(name, entry.key, values)
        values[entry.key] = moot if moot is not None else pick(entry.param, entry.value)

    kind = pick("schedule", space.schedule)
    warmup = pick("warmup_epochs", space.warmup_epochs) if SCHEDULE_CATALOG[kind].warmup else 0
    chosen = {e.key: pick(e.param, e.value) for e in schedule_entries(spec, kind)}
    return {
        "optimizer": arguments(name, values),
        "schedule": schedule_config(kind, chosen, warmup, spec, values["lr"]),
        "batch_size": pick("batch_size", spec.batch_sizes),
        "epochs": spec.train.epochs,
        "seed": seed,
        "data_seed": spec.train.seed,
    }


def schedule_config(kind: str, chosen: dict[str, Any], warmup: int, spec: StudySpec, lr: float) -> dict[str, Any]:
    """A schedule's scheduler arguments: the sampled keys plus the ones the run fixes."""
    span = spec.train.epochs - warmup  # the decay spans the epochs after warmup
    schedule: dict[str, Any] = {"name": kind, **chosen}
    if kind == "cosine":
        schedule = {"name": kind, "T_max": span, **chosen}
    elif kind == "linear":
        schedule = {"name": kind, "start_factor": 1.0, **chosen, "total_iters": span}
    elif kind == "polynomial":
        schedule = {"name": kind, "total_iters": span, **chosen}
    elif kind == "one-cycle":
        schedule = {"name": kind, "max_lr": lr, "total_steps": spec.train.epochs, **chosen, "cycle_momentum": False}
    elif kind == "plateau":
        schedule = {"name": kind, "mode": "max" if spec.direction == "maximize" else "min", **chosen}
    schedule["warmup_epochs"] = warmup
    return schedule


def searched(spec: StudySpec) -> dict[str, Any]:
    """Every Optuna parameter the space can sample, with its range or choices (first use wins)."""
    space = spec.space
    found: dict[str, Any] = {"optimizer": space.optimizer}
    for name in _as_list(space.optimizer):
        for entry in optimizer_entries(spec, name):
            found.setdefault(entry.param, entry.value)
    found["schedule"] = space.schedule
    found["warmup_epochs"] = space.warmup_epochs
    for kind in _as_list(space.schedule):
        for entry in schedule_entries(spec, kind):
            found.setdefault(entry.param, entry.value)
    found["batch_size"] = spec.batch_sizes
    return {k: v for k, v in found.items() if isinstance(v, (FloatRange, IntRange)) or (isinstance(v, list) and len(v) > 1)}


def custom_optimizers(spec: StudySpec) -> dict[str, list[str]]:
    """The optimizer classes named by import path, with the constructor arguments they get."""
    return {
        name: sorted(arguments(name, {e.key: None for e in optimizer_entries(spec, name)}))
        for name in _as_list(spec.space.optimizer)
        if name not in CATALOG
    }


def describe(spec: StudySpec) -> list[tuple[str, str, str]]:
    """The resolved space, one row per key: (key, values, which trials it applies to)."""
    space = spec.space
    optimizers = _as_list(space.optimizer)
    schedules = _as_list(space.schedule)
    rows = [("optimizer", _show(space.optimizer), "all")]
    flat: dict[str, list[tuple[Any, str, str]]] = {}  # key -> (value, where, optimizer)
    own: list[tuple[str, str, str]] = []
    for name in optimizers:
        for entry in optimizer_entries(spec, name):
            if entry.own:
                shown = _show(entry.value) + (" (default)" if entry.where == "default" else "")
                own.append((entry.param, shown, name))
            else:
                flat.setdefault(entry.key, []).append((entry.value, entry.where, name))
    for key, uses in flat.items():
        users = ", ".join(o for _, _, o in uses)
        if key == "lr" and len(uses) == len(optimizers):
            users = "all"
        if uses[0][1] != "default":
            rows.append((key, _show(uses[0][0]), users))
            continue
        defaults = sorted({(_show(v), o) for v, _, o in uses})
        if len({v for v, _ in defaults}) > 1:
            rows.append((key, "default: " + ", ".join(f"{v} ({o})" for v, o in defaults), users))
        else:
            rows.append((key, f"{defaults[0][0]} (default)", users))
    rows += own
    rows.append(("batch_size", _show(spec.batch_sizes), "all"))
    rows.append(("schedule", _show(space.schedule), "all"))
    epochs = spec.train.epochs
    seen: set[str] = set()
    for kind in schedules:
        for key in schedule_keys(kind):
            if key.name in seen:
                continue
            seen.add(key.name)
            users = [s for s in keys_used_by(key.name) if s in schedules]
            given = getattr(space, key.name)
            if given is not None:
                shown = _show(given)
            elif key.default is None:
                shown = f"{default_step_size(epochs)} (epochs // 3)"
            else:
                shown = ", ".join(f"{_show(k.default)} ({s})" for s in users for k in schedule_keys(s) if k.name == key.name)
            rows.append((key.name, shown, ", ".join(users)))
    derived = {"cosine": ("T_max", "epochs - warmup_epochs"), "linear": ("total_iters", "epochs - warmup_epochs"),
               "polynomial": ("total_iters", "epochs - warmup_epochs"), "one-cycle": ("max_lr", "the trial's lr"),
               "plateau": ("mode", "from study.metric")}
    for kind in schedules:
        if kind in derived:
            rows.append((*derived[kind], kind))
    warm = [s for s in schedules if SCHEDULE_CATALOG[s].warmup]
    if warm:
        rows.append(("warmup_epochs", _show(space.warmup_epochs), "all" if len(warm) == len(schedules) else ", ".join(warm)))
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

    def put(param: str, value: Any, allowed: Any, path: str, key: str) -> None:
        if isinstance(allowed, (FloatRange, IntRange)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not allowed.low <= value <= allowed.high:
                raise ConfigError(f"{where}.{path}: {value!r} is outside {key} ({_show(allowed)})")
            params[param] = value
        elif isinstance(allowed, list):
            if value not in allowed or type(value) is not type(allowed[allowed.index(value)]):
                raise ConfigError(f"{where}.{path}: {value!r} is not among {key} ({_show(allowed)})")
            if len(allowed) > 1:
                params[param] = value
        elif value != allowed or isinstance(value, bool) != isinstance(allowed, bool):
            raise ConfigError(f"{where}.{path}: {value!r} differs from {key}, which is fixed at {_show(allowed)}")

    def study_key(entry: Entry) -> str:
        if entry.where != "default":
            return entry.where
        return f"space.optimizers.{table_name(name)}.{entry.key} (by default)" if entry.own else f"space.{entry.key} (by default)"

    try:
        optimizer, schedule = dict(config["optimizer"]), dict(config["schedule"])
        name, kind = optimizer["name"], schedule["name"]
        put("optimizer", name, space.optimizer, "optimizer.name", "space.optimizer")
        chosen: dict[str, Any] = {}
        for entry in optimizer_entries(spec, name):
            value = search_value(optimizer, entry.key)
            chosen[entry.key] = value
            moot = _skipped(name, entry.key, chosen)
            if moot is not None:
                if value != moot:
                    raise ConfigError(f"{where}.optimizer.{entry.key}: must be {moot!r} with this config's other values, got {value!r}")
                continue
            put(entry.param, value, entry.value, f"optimizer.{argument_of(name, entry.key)}", study_key(entry))
        put("schedule", kind, space.schedule, "schedule.name", "space.schedule")
        warmup = schedule.get("warmup_epochs", 0)
        if SCHEDULE_CATALOG[kind].warmup:
            put("warmup_epochs", warmup, space.warmup_epochs, "schedule.warmup_epochs", "space.warmup_epochs")
        elif warmup != 0:
            raise ConfigError(f"{where}.schedule.warmup_epochs: {kind} takes no warmup, got {warmup!r}")
        sampled = {}
        for entry in schedule_entries(spec, kind):
            put(entry.param, schedule[entry.key], entry.value, f"schedule.{entry.key}", study_key(entry))
            sampled[entry.key] = schedule[entry.key]
        expected = schedule_config(kind, sampled, warmup, spec, optimizer["lr"])
        for key, value in expected.items():
            if schedule.get(key, 0 if key == "warmup_epochs" else None) != value:
                raise ConfigError(f"{where}.schedule.{key}: must be {value!r} in this study, got {schedule.get(key)!r}")
        put("batch_size", config["batch_size"], spec.batch_sizes, "batch_size", "space.batch_size")
        epochs = spec.train.epochs
        if config.get("epochs", epochs) != epochs:
            raise ConfigError(f"{where}.epochs: the study trains {epochs} epochs, got {config.get('epochs')!r}")
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, StopIteration) as e:
        raise ConfigError(f"{where}: not a trial config ({type(e).__name__}: {e}); export it with `hpsearch export`") from None
    return params
