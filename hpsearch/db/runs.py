"""Trial runs: one row per attempt at a trial, from start to how it ended.

Written in bulk: a cohort's K runs start in one transaction and end in one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..outcomes import TrialOutcome
from .tables import launches, now, trial_runs


def start_trial_runs(db: Engine, rows: list[dict[str, Any]]) -> list[int]:
    """Insert one run row per trial (one transaction, one statement); returns their ids, in order."""
    if not rows:
        return []
    started = now()
    trial_ids = [values["trial_id"] for values in rows]
    with db.begin() as conn:
        conn.execute(trial_runs.insert(), [dict(values, started_at=started, outcome=TrialOutcome.RUNNING, epochs_run=0) for values in rows])
        # A trial runs once at a time: its newest run row is the one just written.
        found = dict(
            conn.execute(
                sa.select(trial_runs.c.trial_id, sa.func.max(trial_runs.c.run_id))
                .where(trial_runs.c.trial_id.in_(trial_ids))
                .group_by(trial_runs.c.trial_id)
            ).all()
        )
    return [int(found[t]) for t in trial_ids]


def end_trial_runs(db: Engine, rows: list[dict[str, Any]]) -> None:
    """Close run rows (each a dict with its run_id and the final values): one transaction,
    one statement per set of columns."""
    if not rows:
        return
    ended = now()
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in rows:
        columns = tuple(sorted(k for k in values if k != "run_id"))
        by_columns.setdefault(columns, []).append({"target": values["run_id"], **{k: values[k] for k in columns}})
    with db.begin() as conn:
        for columns, group in by_columns.items():
            statement = (
                trial_runs.update()
                .where(trial_runs.c.run_id == sa.bindparam("target"))
                .values(ended_at=ended, **{k: sa.bindparam(k) for k in columns})
            )
            conn.execute(statement, group)


def open_runs(db: Engine, launch_id: int) -> list[int]:
    """Trial ids whose run under this launch never ended."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(trial_runs.c.trial_id).where(trial_runs.c.launch_id == launch_id, trial_runs.c.outcome == TrialOutcome.RUNNING)
        ).all()
        conn.rollback()
    return [row.trial_id for row in rows]


def mark_lost(db: Engine, trial_ids: list[int], reason: str) -> None:
    """Close the still-open run rows of trials whose worker vanished."""
    if not trial_ids:
        return
    with db.begin() as conn:
        conn.execute(
            trial_runs.update()
            .where(trial_runs.c.trial_id.in_(trial_ids), trial_runs.c.outcome == TrialOutcome.RUNNING)
            .values(outcome=TrialOutcome.LOST, ended_at=now(), error=reason)
        )


def trained_with(db: Engine, trial_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The versions of the launch whose run completed each trial (for bundles), by trial id."""
    if not trial_ids:
        return {}
    columns = [launches.c.hpsearch_version, launches.c.torch_version, launches.c.optuna_version, launches.c.python_version, launches.c.cuda_version]
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(trial_runs.c.trial_id, *columns)
            .select_from(trial_runs.join(launches, launches.c.launch_id == trial_runs.c.launch_id))
            .where(trial_runs.c.trial_id.in_(trial_ids), trial_runs.c.outcome == TrialOutcome.COMPLETE)
        ).all()
        conn.rollback()
    names = ("hpsearch", "torch", "optuna", "python", "cuda")
    return {row.trial_id: dict(zip(names, row[1:])) for row in rows}
