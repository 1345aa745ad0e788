"""What running trials report, written for many trials in one transaction.

Optuna's storage writes one value per transaction; a cohort of K trials reports K values
every epoch and K sets of attributes when it starts and ends, which is K round trips each
time (seconds per epoch for a GPU cohort of a thousand). These functions write the same rows
Optuna's storage would (its `trial_intermediate_values` and `trial_user_attributes` tables,
values stored as it stores them) for all K trials at once, and only for trials still
RUNNING: a trial another worker already failed as stale keeps that verdict.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Iterable

import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import Connection, Engine

from .tables import IntermediateValueType, optuna_intermediate_values, optuna_trials, optuna_user_attrs

DEADLOCK_RETRIES = 5  # a deadlocked transaction is rolled back whole; running it again is safe


def _running(conn: Connection, trial_ids: set[int]) -> set[int]:
    rows = conn.execute(
        sa.select(optuna_trials.c.trial_id).where(
            optuna_trials.c.trial_id.in_(trial_ids), optuna_trials.c.state == TrialState.RUNNING
        )
    )
    return {row.trial_id for row in rows}


def report(db: Engine, values: Iterable[tuple[int, int, float]]) -> set[int]:
    """Store (trial_id, step, value) for each trial; returns the trial ids still running."""
    rows = [_intermediate(trial_id, step, value) for trial_id, step, value in values]
    return _replace(db, optuna_intermediate_values, "step", rows)


def set_attrs(db: Engine, attrs: Iterable[tuple[int, str, Any]]) -> set[int]:
    """Set user attributes (trial_id, key, JSON-able value); returns the trial ids still running."""
    rows = [{"trial_id": t, "key": key, "value_json": json.dumps(value)} for t, key, value in attrs]
    return _replace(db, optuna_user_attrs, "key", rows)


def _replace(db: Engine, table: sa.Table, key: str, rows: list[dict[str, Any]]) -> set[int]:
    """Write rows keyed by (trial_id, `key`), replacing any already there, for running trials only."""
    if not rows:
        return set()
    primary = next(iter(table.primary_key.columns))
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with db.begin() as conn:
                alive = _running(conn, {row["trial_id"] for row in rows})
                keep = [row for row in rows if row["trial_id"] in alive]
                # Delete only rows that exist, by primary key: a DELETE that matches nothing
                # locks the index gap on MySQL, and concurrent inserts into it deadlock.
                wanted = {(row["trial_id"], row[key]) for row in keep}
                existing = [
                    found[0]
                    for found in conn.execute(
                        sa.select(primary, table.c.trial_id, table.c[key]).where(table.c.trial_id.in_(alive))
                    )
                    if (found[1], found[2]) in wanted
                ]
                if existing:
                    conn.execute(table.delete().where(primary.in_(existing)))
                if keep:
                    conn.execute(table.insert(), keep)
            return alive
        except sa.exc.DBAPIError as e:
            if attempt + 1 == DEADLOCK_RETRIES or not _is_deadlock(e):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


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
