"""Sampling a whole cohort from one read of the study.

    trials = sample_cohort(study, claimed, suggest)   # claimed: db.claims.claim(...)

`study.ask()` plus `suggest_*` costs a transaction per parameter and a read of every running
trial per trial: O(K) per trial, O(K²) per cohort. Here the study is read once; each claimed
trial is then sampled in order, by the study's own sampler, through an `optuna.Trial` over
that snapshot, and each trial's parameters and attributes join the snapshot as it is
sampled, so the next member sees it running exactly as it would have after its own `ask`
(TPE's constant liar, the grid's visited points). What sampling writes is kept and stored for
the whole cohort in one transaction at the end (a sampler's state in the study's attributes,
as QMC keeps its next sample's number, too). For a given seed the configs are the ones
K asks in a row would have drawn (`tests/search/test_cohort_sampling.py` compares them).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, TypeVar

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.trial import FrozenTrial

from ..db import bulk
from ..db.claims import Claimed
from ..db.storage import rdb
from .snapshot import SnapshotStorage

T = TypeVar("T")


class CohortStorage(SnapshotStorage):
    """A study's storage seen through one snapshot, plus the cohort being sampled; the
    cohort's writes are kept for one bulk write. Anything else passes through."""

    def __init__(self, storage: Any, study_id: int, claimed: list[int]):
        super().__init__(storage, study_id)
        self._known: dict[str, BaseDistribution] = {}
        for t in self._trials:
            self._known.update(t.distributions)
        for trial_id in claimed:  # the cohort's own trials change while sampling: copy them
            self._trials[self._index[trial_id]] = copy.deepcopy(self._trials[self._index[trial_id]])
        self._hidden = set(claimed)  # not asked for yet, so not there yet for the sampler
        self.params: list[tuple[int, str, float, str]] = []
        self.user_attrs: dict[tuple[int, str], Any] = {}
        self._study_attrs: dict[str, Any] | None = None
        self.study_attrs: dict[str, Any] = {}  # a sampler's own state (QMC's next sample)

    def reveal(self, trial_id: int) -> None:
        self._hidden.discard(trial_id)

    def _visible(self, trial: FrozenTrial) -> bool:
        return trial._trial_id not in self._hidden

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).system_attrs

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).user_attrs

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).params

    # -- writes: into the snapshot now, into the database with the cohort ---------------------

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution) -> None:
        known = self._known.get(param_name)
        if known is not None:
            check_distribution_compatibility(known, distribution)  # as Optuna's storage checks
        self._known[param_name] = distribution
        trial = self._own(trial_id)
        trial.distributions[param_name] = distribution
        trial.params[param_name] = distribution.to_external_repr(param_value_internal)
        self.params.append((trial_id, param_name, param_value_internal, distribution_to_json(distribution)))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        # In place: the `optuna.Trial` being sampled holds this very object.
        self._own(trial_id).system_attrs[key] = value
        self.system_attrs[(trial_id, key)] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._own(trial_id).user_attrs[key] = value
        self.user_attrs[(trial_id, key)] = value

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        if self._study_attrs is None:
            self._study_attrs = dict(self._storage.get_study_system_attrs(study_id))
        return dict(self._study_attrs)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.get_study_system_attrs(study_id)
        assert self._study_attrs is not None
        self._study_attrs[key] = self.study_attrs[key] = value

    def _own(self, trial_id: int) -> FrozenTrial:
        if trial_id not in self._index or trial_id in self._hidden:
            raise RuntimeError(f"trial {trial_id} is not being sampled in this cohort")
        return self._trials[self._index[trial_id]]


def sample_cohort(study: optuna.Study, claimed: list[Claimed], suggest: Callable[[optuna.Trial], T]) -> list[tuple[optuna.Trial, T]]:
    """Sample each claimed trial in order with `suggest(trial)`, store it all in one transaction;
    returns each `optuna.Trial` (bound to `study` again) with what `suggest` returned."""
    if not claimed:
        return []
    storage = CohortStorage(study._storage, study._study_id, [c.trial_id for c in claimed])
    view = optuna.Study(study_name=study.study_name, storage=storage, sampler=study.sampler, pruner=study.pruner)  # type: ignore[arg-type]
    sampled: list[tuple[optuna.Trial, T]] = []
    for member in claimed:
        storage.reveal(member.trial_id)
        view._thread_local.cached_all_trials = None  # as `ask` does: each trial sees the last one
        trial = optuna.Trial(view, member.trial_id)
        sampled.append((trial, suggest(trial)))
    bulk.record_sampled(
        rdb(study).engine,
        storage.params,
        [(t, k, v) for (t, k), v in storage.system_attrs.items()],
        [(t, k, v) for (t, k), v in storage.user_attrs.items()],
        (study._study_id, storage.study_attrs),
    )
    for trial, _ in sampled:  # from now on it reads and writes the study as any trial does
        trial.study, trial.storage = study, study._storage
    return sampled
