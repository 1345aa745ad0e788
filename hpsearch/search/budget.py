"""The study's budget and standings, read with one cheap query each.

Optuna's own accessors load every trial; a worker asks "how many are finished?" before
every cohort and the progress display twice a second, so these count in SQL instead.
"""

from __future__ import annotations

import optuna
import sqlalchemy as sa

from ..db import tables
from ..db.storage import rdb

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


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The `k` best complete trials that carry a config, best first."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted((t for t in complete if "config" in t.user_attrs), key=lambda t: t.value, reverse=maximize)  # type: ignore[arg-type, return-value]
    return ranked[:k]
