"""Claiming a cohort's trials: K trials within the study's budget, in one transaction.

Optuna's `study.ask()` creates one trial per transaction and then reads every running trial;
a cohort asks for K at once. Under the study row's lock (the lock Optuna's own trial creation
takes, so numbers never collide with a plain `ask` elsewhere) `claim` counts what the budget
has left, takes the oldest queued (WAITING) trials first, creates the rest as new RUNNING
trials numbered as Optuna numbers them, and gives every claimed trial its first heartbeat.

The budget: a study of `n_trials` runs no more than `n_trials` trials that finish (COMPLETE or
PRUNED) or may still finish (RUNNING); queued trials hold their places, so a fresh trial is
created only when every queued one fits in the budget too. Failed trials hold none: their
retries are queued.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import Engine

from .tables import now, optuna_heartbeats, optuna_studies, optuna_trials

_trials = optuna_trials


@dataclass(frozen=True)
class Claimed:
    trial_id: int
    number: int
    queued: bool  # a WAITING trial (a retry, an enqueued config), not a new one


def claim(db: Engine, study_id: int, n_trials: int, size: int) -> list[Claimed]:
    """Up to `size` trials for one worker to run now, oldest queued first, then new ones."""
    if size < 1:
        return []
    with db.begin() as conn:
        # Numbering counts the study's trials: nobody may add one until this commits.
        conn.execute(sa.select(optuna_studies.c.study_id).where(optuna_studies.c.study_id == study_id).with_for_update())
        by_state = dict(
            conn.execute(
                sa.select(_trials.c.state, sa.func.count()).where(_trials.c.study_id == study_id).group_by(_trials.c.state)
            ).all()
        )
        taken = sum(by_state.get(s, 0) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        room = n_trials - taken
        if room <= 0:
            return []
        queued = conn.execute(
            sa.select(_trials.c.trial_id, _trials.c.number)
            .where(_trials.c.study_id == study_id, _trials.c.state == TrialState.WAITING)
            .order_by(_trials.c.number)
            .limit(min(size, room))
            .with_for_update()
        ).all()
        started = now()
        if queued:
            conn.execute(
                _trials.update()
                .where(_trials.c.trial_id.in_([row.trial_id for row in queued]), _trials.c.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=started)
            )
        fresh = max(0, min(size - len(queued), room - by_state.get(TrialState.WAITING, 0)))
        claimed = [Claimed(row.trial_id, row.number, True) for row in queued]
        if fresh:
            first = sum(by_state.values())  # Optuna's number: how many trials the study has
            conn.execute(
                _trials.insert(),
                [{"number": first + i, "study_id": study_id, "state": TrialState.RUNNING, "datetime_start": started} for i in range(fresh)],
            )
            rows = conn.execute(
                sa.select(_trials.c.trial_id, _trials.c.number)
                .where(_trials.c.study_id == study_id, _trials.c.number >= first)
                .order_by(_trials.c.number)
            ).all()
            claimed += [Claimed(row.trial_id, row.number, False) for row in rows]
        ids = [c.trial_id for c in claimed]
        # The first beat, from the database's clock as every later one (`bulk.beat`). Queued
        # trials have none yet: they were created WAITING and never ran.
        conn.execute(
            optuna_heartbeats.insert().from_select(
                ["trial_id", "heartbeat"],
                sa.select(_trials.c.trial_id, sa.func.now(type_=sa.DateTime)).where(_trials.c.trial_id.in_(ids)),
            )
        )
    return claimed
