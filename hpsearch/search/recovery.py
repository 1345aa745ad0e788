"""Recovery of trials whose worker died: fail them and queue them again.

A trial is stale when its last heartbeat (`run/heartbeat.py` records them) is older than the
grace period; a RUNNING trial that never got a first heartbeat (its worker died right after
asking) is stale once it is that old too. Stale trials are failed and re-queued with their
parameters, up to `max_retry` times, with the lineage on the new trial (`retry_of`,
`retry_history`), as Optuna's retry callback does.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models  # Optuna's own table mappings: one transaction for both steps
from optuna.trial import TrialState
from sqlalchemy import orm

from ..db import runs, tables
from ..db.storage import rdb

# What a queued trial is given (its seed, its part in a comparison, where a warm start came
# from, that it ran out of memory alone once); a retry keeps it.
QUEUED_ATTRS = ("seed", "compare_optimizer", "warm_start", "out_of_memory")


class Requeue:
    """Re-queue a failed trial with the same parameters (picklable: it travels to Dask)."""

    def __init__(self, max_retry: int | None):
        self.max_retry = max_retry

    def lineage(self, number: int, system_attrs: dict, user_attrs: dict) -> tuple[dict, dict] | None:
        """The retry's system and user attributes, or None when the trial has used its retries."""
        history = [*system_attrs.get("retry_history", []), number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return None
        role = {k: v for k, v in user_attrs.items() if k in QUEUED_ATTRS}
        return {"failed_trial": history[0], "retry_history": history}, {**role, "retry_of": history[0], "retry_history": history}

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        attrs = self.lineage(trial.number, trial.system_attrs, trial.user_attrs)
        if attrs is None:
            return False
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs=attrs[0],
                user_attrs=attrs[1],
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
        db_now = tables.db_now(conn)
        rows = conn.execute(
            sa.select(trials.c.trial_id, trials.c.datetime_start, beats.c.heartbeat)
            .select_from(trials.outerjoin(beats, beats.c.trial_id == trials.c.trial_id))
            .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING)
        ).all()
        conn.rollback()
    grace = dt.timedelta(seconds=grace_seconds)
    here_now = tables.now()  # start times are stored as naive UTC
    stale = [
        row.trial_id
        for row in rows
        if (row.heartbeat is not None and db_now - row.heartbeat > grace)
        or (row.heartbeat is None and row.datetime_start is not None and here_now - row.datetime_start > grace)
    ]
    return release(study, stale, "worker stopped sending heartbeats", requeue)


def release(
    study: optuna.Study, trial_ids: list[int], reason: str, requeue: Requeue, attrs: dict[str, Any] | None = None
) -> list[int]:
    """Fail these RUNNING trials (by id) with `reason` (and `attrs`), re-queue them, close their run rows.

    The trials are failed and their retries queued in one transaction (a cohort's K in one),
    so a crash or a database fault in between cannot lose a retry; running it again after a
    rollback is safe. Returns the numbers of the trials this call failed (others may have
    beaten it to some).
    """
    if not trial_ids:
        return []
    storage = rdb(study)
    numbers: list[int] = []
    failed: list[int] = []
    with orm.Session(storage.engine) as session, session.begin():
        for trial_id in trial_ids:
            number = _fail_and_requeue(session, trial_id, {"error": reason, **(attrs or {})}, requeue)
            if number is not None:
                failed.append(trial_id)
                numbers.append(number)
    runs.mark_lost(storage.engine, failed, reason)
    return numbers


def _fail_and_requeue(session: orm.Session, trial_id: int, attrs: dict[str, Any], requeue: Requeue) -> int | None:
    """In the caller's transaction: fail the trial if it still runs, queue its retry; its number."""
    failed = session.execute(
        sa.update(models.TrialModel)
        .where(models.TrialModel.trial_id == trial_id, models.TrialModel.state == TrialState.RUNNING)
        .values(state=TrialState.FAIL, datetime_complete=tables.now())
        .execution_options(synchronize_session=False)
    )
    if failed.rowcount != 1:
        return None  # another worker finished or failed it first
    trial = session.get(models.TrialModel, trial_id)
    assert trial is not None
    session.execute(
        sa.delete(models.TrialUserAttributeModel).where(
            models.TrialUserAttributeModel.trial_id == trial_id, models.TrialUserAttributeModel.key.in_(list(attrs))
        )
    )
    session.add_all(models.TrialUserAttributeModel(trial_id=trial_id, key=k, value_json=json.dumps(v)) for k, v in attrs.items())
    session.flush()
    session.refresh(trial)
    system = {a.key: json.loads(a.value_json) for a in trial.system_attributes}
    user = {a.key: json.loads(a.value_json) for a in trial.user_attributes}
    lineage = requeue.lineage(trial.number, system, user)
    if lineage is not None:
        # Numbering a trial counts the trials before it: lock the study row first, as Optuna
        # does when it creates one, or two workers numbering at once take the same number.
        models.StudyModel.find_or_raise_by_id(trial.study_id, session, for_update=True)
        retry = models.TrialModel(number=None, study_id=trial.study_id, state=TrialState.WAITING, datetime_start=None)
        session.add(retry)
        session.flush()
        retry.number = retry.count_past_trials(session)
        session.add_all(
            models.TrialParamModel(trial_id=retry.trial_id, param_name=p.param_name, param_value=p.param_value, distribution_json=p.distribution_json)
            for p in trial.params
        )
        session.add_all(models.TrialSystemAttributeModel(trial_id=retry.trial_id, key=k, value_json=json.dumps(v)) for k, v in lineage[0].items())
        session.add_all(models.TrialUserAttributeModel(trial_id=retry.trial_id, key=k, value_json=json.dumps(v)) for k, v in lineage[1].items())
    return int(trial.number)
