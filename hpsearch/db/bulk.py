"""What running trials write, for many trials in one transaction.

Optuna's storage writes one value per transaction; a cohort of K trials samples K configs,
reports K values every epoch, beats for K trials and ends K trials, which is K round trips
each time (seconds per epoch for a GPU cohort of a thousand). These functions write the same
rows Optuna's storage would (its parameters, attributes, intermediate values, values, states
and heartbeats, stored as it stores them: `tests/db/test_optuna_schema.py` holds the schema to
what it relies on) for all K trials at once, and only for trials still RUNNING: a trial
another worker already failed as stale keeps that verdict.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import Connection, Engine

from .tables import (
    IntermediateValueType,
    ValueType,
    now,
    optuna_heartbeats,
    optuna_intermediate_values,
    optuna_params,
    optuna_study_system_attrs,
    optuna_system_attrs,
    optuna_trials,
    optuna_user_attrs,
    optuna_values,
)

DEADLOCK_RETRIES = 5  # a deadlocked transaction is rolled back whole; running it again is safe


@dataclass(frozen=True)
class TrialEnd:
    """How one trial ended, as Optuna's `tell` stores it."""

    trial_id: int
    state: TrialState  # COMPLETE, PRUNED or FAIL
    value: float | None  # None: no value (a failed trial, a pruned one that never reported)


def report(db: Engine, values: Iterable[tuple[int, int, float]]) -> set[int]:
    """Store (trial_id, step, value) for each trial; returns the trial ids still running."""
    return _replace_rows(db, optuna_intermediate_values, "step", [_intermediate(t, step, value) for t, step, value in values])


def set_system_attrs(db: Engine, attrs: Iterable[tuple[int, str, Any]]) -> set[int]:
    """Set system attributes (trial_id, key, JSON-able value), e.g. a pruner's rung records;
    returns the trial ids still running."""
    return _replace_rows(db, optuna_system_attrs, "key", _attr_rows(attrs))


def record_sampled(
    db: Engine,
    params: Iterable[tuple[int, str, float, str]],
    system_attrs: Iterable[tuple[int, str, Any]],
    user_attrs: Iterable[tuple[int, str, Any]],
    study_attrs: tuple[int, dict[str, Any]] | None = None,
) -> set[int]:
    """What sampling a cohort wrote, in one transaction: parameters (trial_id, name, internal
    value, distribution JSON), attributes and the study's system attributes a sampler keeps
    (study_id, {key: value}); returns the trial ids still running."""
    param_rows = [{"trial_id": t, "param_name": n, "param_value": v, "distribution_json": d} for t, n, v, d in params]
    system_rows, user_rows = _attr_rows(system_attrs), _attr_rows(user_attrs)
    ids = {row["trial_id"] for row in param_rows + system_rows + user_rows}

    def write(conn: Connection, alive: set[int]) -> None:
        _replace(conn, optuna_params, "param_name", param_rows, alive)
        _replace(conn, optuna_system_attrs, "key", system_rows, alive)
        _replace(conn, optuna_user_attrs, "key", user_rows, alive)
        if study_attrs and study_attrs[1]:
            study_id, values = study_attrs
            table = optuna_study_system_attrs
            conn.execute(table.delete().where(table.c.study_id == study_id, table.c.key.in_(list(values))))
            conn.execute(table.insert(), [{"study_id": study_id, "key": k, "value_json": json.dumps(v)} for k, v in values.items()])

    return _in_transaction(db, ids, write)


def end_trials(db: Engine, ends: list[TrialEnd], attrs: Iterable[tuple[int, str, Any]] = ()) -> set[int]:
    """Tell how trials ended and set their last attributes, in one transaction, for the trials
    still running; returns those (a trial failed as stale elsewhere keeps that verdict)."""
    attr_rows = _attr_rows(attrs)
    ended = now()

    def write(conn: Connection, alive: set[int]) -> None:
        told = [end for end in ends if end.trial_id in alive]
        _replace(conn, optuna_values, "objective", [_value(end.trial_id, end.value) for end in told if end.value is not None], alive)
        for state in {end.state for end in told}:
            ids = [end.trial_id for end in told if end.state == state]
            conn.execute(
                optuna_trials.update()
                .where(optuna_trials.c.trial_id.in_(ids), optuna_trials.c.state == TrialState.RUNNING)
                .values(state=state, datetime_complete=ended)
            )
        _replace(conn, optuna_user_attrs, "key", attr_rows, alive)

    told = {end.trial_id for end in ends}
    return told & _in_transaction(db, told | {row["trial_id"] for row in attr_rows}, write)


def beat(db: Engine, trial_ids: Iterable[int]) -> None:
    """One heartbeat for every trial in `trial_ids`: one statement, the database's clock."""
    ids = list(trial_ids)
    if not ids:
        return
    with db.begin() as conn:
        conn.execute(
            optuna_heartbeats.update().where(optuna_heartbeats.c.trial_id.in_(ids)).values(heartbeat=sa.func.now(type_=sa.DateTime))
        )


def _replace_rows(db: Engine, table: sa.Table, key: str, rows: list[dict[str, Any]]) -> set[int]:
    return _in_transaction(db, {row["trial_id"] for row in rows}, lambda conn, alive: _replace(conn, table, key, rows, alive))


def _in_transaction(db: Engine, trial_ids: set[int], write: Callable[[Connection, set[int]], None]) -> set[int]:
    """Run `write(conn, running ids)` in one transaction, again if it deadlocked."""
    if not trial_ids:
        return set()
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with db.begin() as conn:
                alive = _running(conn, trial_ids)
                write(conn, alive)
            return alive
        except sa.exc.DBAPIError as e:
            if attempt + 1 == DEADLOCK_RETRIES or not _is_deadlock(e):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _running(conn: Connection, trial_ids: set[int]) -> set[int]:
    # Locked until the transaction ends: a stale-trial recovery cannot fail them halfway.
    rows = conn.execute(
        sa.select(optuna_trials.c.trial_id)
        .where(optuna_trials.c.trial_id.in_(trial_ids), optuna_trials.c.state == TrialState.RUNNING)
        .with_for_update()
    )
    return {row.trial_id for row in rows}


def _replace(conn: Connection, table: sa.Table, key: str, rows: list[dict[str, Any]], alive: set[int]) -> None:
    """Write rows keyed by (trial_id, `key`), replacing any already there, for running trials only."""
    # The last write of a key wins, as it would one write at a time.
    keep = list({(row["trial_id"], row[key]): row for row in rows if row["trial_id"] in alive}.values())
    if not keep:
        return
    primary = next(iter(table.primary_key.columns))
    # Delete only rows that exist, by primary key: a DELETE that matches nothing locks the
    # index gap on MySQL, and concurrent inserts into it deadlock.
    wanted = {(row["trial_id"], row[key]) for row in keep}
    owners = list({row["trial_id"] for row in keep})
    existing = [
        found[0]
        for found in conn.execute(sa.select(primary, table.c.trial_id, table.c[key]).where(table.c.trial_id.in_(owners)))
        if (found[1], found[2]) in wanted
    ]
    if existing:
        conn.execute(table.delete().where(primary.in_(existing)))
    conn.execute(table.insert(), keep)


def _attr_rows(attrs: Iterable[tuple[int, str, Any]]) -> list[dict[str, Any]]:
    return [{"trial_id": t, "key": key, "value_json": json.dumps(value)} for t, key, value in attrs]


def _value(trial_id: int, value: float) -> dict[str, Any]:
    if math.isinf(value):
        stored, kind = None, ValueType.INF_POS if value > 0 else ValueType.INF_NEG
    else:
        stored, kind = value, ValueType.FINITE
    return {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind}


def _is_deadlock(error: sa.exc.DBAPIError) -> bool:
    """MySQL's 1213 (deadlock) and 1205 (lock wait timeout); PostgreSQL's 40P01 and 40001."""
    code = getattr(error.orig, "args", [None])[0]
    state = getattr(error.orig, "sqlstate", None)
    return code in (1205, 1213) or state in ("40P01", "40001")


def _intermediate(trial_id: int, step: int, value: float) -> dict[str, Any]:
    if math.isnan(value):
        stored, kind = None, IntermediateValueType.NAN
    elif math.isinf(value):
        stored, kind = None, IntermediateValueType.INF_POS if value > 0 else IntermediateValueType.INF_NEG
    else:
        stored, kind = value, IntermediateValueType.FINITE
    return {"trial_id": trial_id, "step": step, "intermediate_value": stored, "intermediate_value_type": kind}
