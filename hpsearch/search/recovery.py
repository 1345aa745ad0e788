"""Recovery of trials whose worker died: fail them and queue them again.

A trial is stale when its last heartbeat (`run/heartbeat.py` records them) is older than the
grace period; a RUNNING trial that never got a first heartbeat (its worker died right after
asking) is stale once it is that old too. Stale trials are failed and re-queued with their
parameters, up to `max_retry` times, with the lineage on the new trial (`retry_of`,
`retry_history`), as Optuna's retry callback does.
"""

from __future__ import annotations

import datetime as dt

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from ..db import runs, tables
from ..db.storage import rdb

# What a queued trial is given (its seed, its part in a comparison, where a warm start came
# from); a retry keeps it.
QUEUED_ATTRS = ("seed", "compare_optimizer", "warm_start")


class Requeue:
    """Re-queue a failed trial with the same parameters (picklable: it travels to Dask)."""

    def __init__(self, max_retry: int | None):
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return False
        lineage = {"failed_trial": history[0], "retry_history": history}
        role = {k: v for k, v in trial.user_attrs.items() if k in QUEUED_ATTRS}
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs=lineage,
                user_attrs={**role, "retry_of": history[0], "retry_history": history},
            )
        )
        return True


def fail_stale(study: optuna.Study, grace_seconds: float, requeue: Requeue) -> list[int]:
    """Fail (and re-queue) this study's stale RUNNING trials; returns their numbers."""
    storage = rdb(study)
    engine = storage.engine
    study_id = study._study_id
    trials, beats = tables.optuna_trials, tables.optuna_heartbeats
    with engine.connect() as conn:
        # Heartbeats carry the database's clock, start times the workers' (as in Optuna).
        db_now = conn.execute(sa.select(sa.func.now(type_=sa.DateTime))).scalar().replace(tzinfo=None)
        rows = conn.execute(
            sa.select(trials.c.trial_id, trials.c.datetime_start, beats.c.heartbeat)
            .select_from(trials.outerjoin(beats, beats.c.trial_id == trials.c.trial_id))
            .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING)
        ).all()
        conn.rollback()
    grace = dt.timedelta(seconds=grace_seconds)
    here_now = dt.datetime.now()
    stale = [
        row.trial_id
        for row in rows
        if (row.heartbeat is not None and db_now - row.heartbeat > grace)
        or (row.heartbeat is None and row.datetime_start is not None and here_now - row.datetime_start > grace)
    ]
    return release(study, stale, "worker stopped sending heartbeats", requeue)


def release(study: optuna.Study, trial_ids: list[int], reason: str, requeue: Requeue) -> list[int]:
    """Fail these RUNNING trials (by id) with `reason`, re-queue them, close their run rows.

    Returns the numbers of the trials this call failed (others may have beaten it to some).
    """
    storage = rdb(study)
    failed: list[int] = []
    numbers: list[int] = []
    for trial_id in trial_ids:
        try:
            storage.set_trial_user_attr(trial_id, "error", reason)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker finished or failed it first
        frozen = storage.get_trial(trial_id)
        requeue(study, frozen)
        failed.append(trial_id)
        numbers.append(frozen.number)
    runs.mark_lost(storage.engine, failed, reason)
    return numbers
