"""A spec's Optuna study: create it (launch) or join it (worker), with sampler and pruner.

The study file's text is kept in `hpsearch_study_files`, and the study's user attribute
`hpsearch` points at it together with the command-line overrides of the launch, so a worker
on another machine needs only the study name and the storage URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy as sa

from . import tables
from .errors import SpecError, StorageError, StudyNotFound
from .spec import FloatRange, IntRange, StudyFile, StudySpec, parse_study_file
from .storage import mask_url, rdb

if TYPE_CHECKING:
    from .spec import SearchSection

ATTR = "hpsearch"  # the study user attribute holding the study-file hash and overrides
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass(frozen=True)
class OpenStudy:
    """An Optuna study together with the study file (overrides applied) it runs."""

    study: optuna.Study
    file: StudyFile
    overrides: dict[str, Any]

    @property
    def spec(self) -> StudySpec:
        return self.file.spec


def make_sampler(spec: StudySpec, worker: int = 0, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded. Each worker, and each resumed launch, gets its own seed
    (derived from the study's), so parallel or resumed searches do not repeat each other."""
    search = spec.search
    seed = search.seed
    if seed is not None and (worker or offset):
        seed = int.from_bytes(hashlib.sha256(f"{seed}/{worker}/{offset}".encode()).digest()[:4], "little")
    name, options = search.sampler, dict(search.sampler_options)
    samplers = optuna.samplers
    try:
        if name == "tpe":
            defaults = {"multivariate": True, "group": True, "constant_liar": True}
            return samplers.TPESampler(seed=seed, **{**defaults, **options})
        if name == "random":
            return samplers.RandomSampler(seed=seed, **options)
        if name == "cmaes":
            return samplers.CmaEsSampler(seed=seed, **{"warn_independent_sampling": False, **options})
        if name == "gp":
            return samplers.GPSampler(seed=seed, **{"warn_independent_sampling": False, **options})
        if name == "qmc":
            return samplers.QMCSampler(seed=seed, **{"warn_independent_sampling": False, **options})
        return samplers.GridSampler(grid_space(spec), seed=seed, **options)
    except TypeError as e:
        raise SpecError(f"search.sampler_options: {name} sampler rejects {options}: {e}") from None


def make_pruner(search: "SearchSection", epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner; resources are epochs, given explicitly (no 'auto' estimate)."""
    name, options = search.pruner, dict(search.pruner_options)
    pruners = optuna.pruners
    try:
        if name == "none":
            return pruners.NopPruner(**options)
        if name == "median":
            return pruners.MedianPruner(**{"n_startup_trials": 5, "n_warmup_steps": 1, **options})
        if name == "successive-halving":
            return pruners.SuccessiveHalvingPruner(**{"min_resource": 1, "reduction_factor": 3, **options})
        return pruners.HyperbandPruner(
            **{"min_resource": 1, "max_resource": epochs, "reduction_factor": 3, **options}
        )
    except (TypeError, ValueError) as e:
        raise SpecError(f"search.pruner_options: {name} pruner rejects {options}: {e}") from None


def grid_space(spec: StudySpec) -> dict[str, list[Any]]:
    """Every searched key with its values, for the grid sampler."""
    grid: dict[str, list[Any]] = {}
    for key in type(spec.space).model_fields:
        value = spec.batch_sizes if key == "batch_size" else getattr(spec.space, key)
        if isinstance(value, list) and len(value) > 1:
            grid[key] = value
        elif isinstance(value, IntRange):
            grid[key] = list(range(value.low, value.high + 1, value.step or 1))
        elif isinstance(value, FloatRange):  # refused by the spec; kept for completeness
            raise SpecError(f"search.sampler: grid cannot search the range space.{key}")
    return grid


def _comparable(spec: StudySpec) -> dict[str, Any]:
    """What must not change between launches of one study: all but [search] and data.dir."""
    data = spec.model_dump(mode="json")
    data.pop("search")
    data["data"].pop("dir")
    return data


def create_study(storage: optuna.storages.BaseStorage, file: StudyFile, overrides: dict[str, Any]) -> OpenStudy:
    """Create the study, or resume it when one of that name exists with the same setup."""
    spec = file.spec
    engine = storage.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        tables.record_study_file(conn, file.sha256, file.name, file.path, file.text)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    name = spec.study.name
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        direction = study.direction.name.lower()
        if direction != spec.direction:
            raise SpecError(
                f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} is "
                f"{direction}d, but this file's metric is {spec.direction}d; use another study name"
            )
        previous = study.user_attrs.get(ATTR)
        if previous is not None:
            before = _stored_file(engine, name, previous)
            if _comparable(before.spec) != _comparable(spec):
                raise SpecError(
                    f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} was "
                    f"created from a different study file ({before.path}: its model, data, "
                    "training or space differ); use another study name to start afresh"
                )
    else:
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction=spec.direction)
        except optuna.exceptions.DuplicatedStudyError:  # another launcher won the race
            study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr(
        ATTR,
        {
            "study_file_sha256": file.sha256,
            "study_file": file.path,
            "metric": spec.metric,
            "overrides": overrides,
            "n_trials": spec.search.n_trials,
        },
    )
    return OpenStudy(study=study, file=file, overrides=overrides)


def open_study(storage: optuna.storages.BaseStorage, name: str) -> OpenStudy:
    """Join an existing study: its stored study file with the last launch's overrides."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyNotFound(_missing(storage, name)) from None
    attrs = study.user_attrs.get(ATTR)
    if attrs is None:
        raise StorageError(
            f"study {name!r} in {mask_url(storage.url)} was not created by hpsearch; "  # type: ignore[attr-defined]
            "launch it with `hpsearch launch STUDY_FILE`"
        )
    file = _stored_file(storage.engine, name, attrs)  # type: ignore[attr-defined]
    overrides = dict(attrs.get("overrides", {}))
    spec = file.spec.with_overrides(**overrides)
    return OpenStudy(study=study, file=StudyFile(file.path, file.text, spec), overrides=overrides)


def load_plain_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Any study by name (hpsearch's or not), for read-only commands."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyNotFound(_missing(storage, name)) from None


def _missing(storage: optuna.storages.BaseStorage, name: str) -> str:
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    known = f"; studies there: {', '.join(names)}" if names else "; it holds no studies"
    return f"no study {name!r} in {mask_url(storage.url)}{known}"  # type: ignore[attr-defined]


def _stored_file(engine: Any, name: str, attrs: dict[str, Any]) -> StudyFile:
    found = tables.study_file_text(engine, attrs["study_file_sha256"])
    if found is None:
        raise StorageError(f"study {name!r}: its study file {attrs['study_file_sha256'][:12]} is not stored")
    path, text = found
    return parse_study_file(text, f"{path} (stored with study {name!r})")


_trials, _values = tables.optuna_trials, tables.optuna_values


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, e.g. {"COMPLETE": 12, "PRUNED": 3, "RUNNING": 2}: one cheap query."""
    with rdb(study).engine.connect() as conn:
        rows = conn.execute(
            sa.select(_trials.c.state, sa.func.count())
            .where(_trials.c.study_id == study._study_id)
            .group_by(_trials.c.state)
        ).all()
        conn.rollback()
    return {state.name: int(n) for state, n in rows}


def finished(study_counts: dict[str, int]) -> int:
    return study_counts.get("COMPLETE", 0) + study_counts.get("PRUNED", 0)


def claims_a_slot(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial `number` is within the budget: fewer than `n_trials` trials numbered
    below it are finished, running or queued. Trial numbers are handed out atomically by the
    database, so when workers race for the last slot exactly one of them gets it.

    Queued (WAITING) trials count because a worker may ask for a fresh trial in the moment
    before another worker's re-queued trial (the retry of a killed one) is committed: the
    retry, numbered lower, keeps its slot and the fresh trial goes back to the queue.
    """
    TrialState = optuna.trial.TrialState
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    with rdb(study).engine.connect() as conn:
        ahead = conn.execute(
            sa.select(sa.func.count())
            .select_from(_trials)
            .where(_trials.c.study_id == study._study_id, _trials.c.number < number, _trials.c.state.in_(states))
        ).scalar_one()
        conn.rollback()
    return int(ahead) < n_trials


def best_so_far(study: optuna.Study) -> tuple[int, float] | None:
    """(trial number, value) of the best complete trial, or None: one cheap query."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    order = _values.c.value.desc() if maximize else _values.c.value.asc()
    with rdb(study).engine.connect() as conn:
        row = conn.execute(
            sa.select(_trials.c.number, _values.c.value)
            .select_from(_trials.join(_values, _values.c.trial_id == _trials.c.trial_id))
            .where(
                _trials.c.study_id == study._study_id,
                _trials.c.state == optuna.trial.TrialState.COMPLETE,
                _values.c.objective == 0,
                _values.c.value_type == tables.ValueType.FINITE,
            )
            .order_by(order)
            .limit(1)
        ).first()
        conn.rollback()
    return None if row is None else (int(row.number), float(row.value))


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial, read on its own (not with every other trial)."""
    found = best_so_far(study)
    if found is None:
        return None
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, found[0]))
