"""One read of a study serving many decisions.

Optuna's cached storage reloads every unfinished trial each time a sampler or pruner looks at
the study, and a cohort keeps K trials running, so each look costs K trial loads. Two places
ask many questions of a study that does not change in between:

* sampling one trial: the sampler looks at the study for each group of parameters; with
  `SnapshotSampler` it sees one snapshot per trial;
* pruning a cohort: K members report the same epoch; `prune_together` reads the study once,
  after all K reports, and asks the pruner about each member against that snapshot.

Writes (a new trial's parameters, successive halving's rung records) go to the database as
always and, for the pruner, into the snapshot too, so later members see earlier members'
promotions as they would one by one.
"""

from __future__ import annotations

import copy
from typing import Any, Container, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


class SnapshotStorage:
    """A study's storage whose trial reads come from one snapshot; all else passes through."""

    def __init__(self, storage: Any, study_id: int):
        self._storage = storage
        self._trials = list(storage.get_all_trials(study_id, deepcopy=False))
        self._index = {t._trial_id: i for i, t in enumerate(self._trials)}

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if trial_id in self._index:
            return self._trials[self._index[trial_id]]
        return self._storage.get_trial(trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._storage.set_trial_system_attr(trial_id, key, value)
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


class SnapshotSampler(BaseSampler):
    """Wraps a sampler so that, while it samples one trial, it sees one snapshot of the study."""

    def __init__(self, sampler: BaseSampler):
        self.sampler = sampler
        self._for: tuple[int, int] | None = None
        self._view: optuna.Study | None = None

    def _snapshot(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        key = (study._study_id, trial.number)
        if self._for != key or self._view is None:
            self._view, _ = snapshot_view(study)
            self._for = key
        return self._view

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(self._snapshot(study, trial), trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.sampler.sample_relative(self._snapshot(study, trial), trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.sampler.sample_independent(self._snapshot(study, trial), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._for = self._view = None
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def prune_together(study: optuna.Study, trial_ids: list[int]) -> list[bool]:
    """The pruner's verdict for each trial (whose latest report is stored), in order."""
    if isinstance(study.pruner, optuna.pruners.NopPruner):
        return [False] * len(trial_ids)
    view, storage = snapshot_view(study)
    return [study.pruner.prune(view, storage.get_trial(trial_id)) for trial_id in trial_ids]
