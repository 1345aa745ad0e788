"""One read of a study serving many decisions.

Optuna's cached storage reloads every unfinished trial each time a sampler or pruner looks at
the study, and a cohort keeps K trials running, so each look costs K trial loads. When K
members report the same epoch, `prune_together` reads the study once, after all K reports,
and asks the pruner about each member against that snapshot. (Sampling a cohort works the
same way: `cohort_sampling.py`.)

Successive halving's rung records go into the snapshot at once, so later members see earlier
members' promotions as they would one by one, and into the database for all members in one
transaction at the end.
"""

from __future__ import annotations

import copy
from typing import Any, Container

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..db import bulk
from ..db.storage import rdb


class SnapshotStorage:
    """A study's storage whose trial reads come from one snapshot; all else passes through."""

    def __init__(self, storage: Any, study_id: int):
        self._storage = storage
        self._trials = list(storage.get_all_trials(study_id, deepcopy=False))
        self._index = {t._trial_id: i for i, t in enumerate(self._trials)}
        self.system_attrs: dict[tuple[int, str], Any] = {}  # written, to store in one go

    def _visible(self, trial: FrozenTrial) -> bool:
        return True

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = [t for t in self._trials if self._visible(t) and (states is None or t.state in states)]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if trial_id in self._index:
            return self._trials[self._index[trial_id]]
        return self._storage.get_trial(trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.system_attrs[(trial_id, key)] = value
        if trial_id in self._index:
            # Copy on write: the snapshot shares unchanged trials with Optuna's cache.
            i = self._index[trial_id]
            trial = copy.copy(self._trials[i])
            trial._system_attrs = {**trial.system_attrs, key: value}
            self._trials[i] = trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def snapshot_view(study: optuna.Study) -> tuple[optuna.Study, SnapshotStorage]:
    """A Study object over a snapshot of `study` (same name, sampler and pruner)."""
    storage = SnapshotStorage(study._storage, study._study_id)
    view = optuna.Study(study_name=study.study_name, storage=storage, sampler=study.sampler, pruner=study.pruner)  # type: ignore[arg-type]
    return view, storage


def prune_together(study: optuna.Study, trial_ids: list[int]) -> list[bool]:
    """The pruner's verdict for each trial (whose latest report is stored), in order."""
    if isinstance(study.pruner, optuna.pruners.NopPruner):
        return [False] * len(trial_ids)
    view, storage = snapshot_view(study)
    verdicts = [study.pruner.prune(view, storage.get_trial(trial_id)) for trial_id in trial_ids]
    bulk.set_system_attrs(rdb(study).engine, [(t, k, v) for (t, k), v in storage.system_attrs.items()])
    return verdicts
