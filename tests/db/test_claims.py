"""Claiming a cohort's trials in one transaction: the queue first, the budget exact, numbers
as Optuna gives them, on every database, also when many processes claim at once."""

from __future__ import annotations

import multiprocessing

import optuna
import pytest

from hpsearch.db.claims import claim
from hpsearch.db.storage import initialize, open_storage, rdb


def _study(url: str, name: str = "s") -> optuna.Study:
    initialize(url)
    return optuna.create_study(study_name=name, storage=open_storage(url))


def test_queued_trials_first_then_new_ones_within_the_budget(storage_url) -> None:
    study = _study(storage_url)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=1.0))  # trials 0 and 1 finished
    study.enqueue_trial({"x": 0.5})  # trial 2: queued
    db = rdb(study).engine
    first = claim(db, study._study_id, n_trials=4, size=5)
    assert [(c.number, c.queued) for c in first] == [(2, True), (3, False)]
    assert claim(db, study._study_id, n_trials=4, size=5) == []  # 2 finished + 2 running
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "RUNNING", "RUNNING"]
    assert all(t.datetime_start is not None for t in trials[2:])
    # Optuna reads them as its own: the queued trial keeps what it was queued with.
    assert trials[2].system_attrs["fixed_params"] == {"x": 0.5}
    assert study._storage.get_trial_id_from_study_id_trial_number(study._study_id, 3) == first[1].trial_id
    # Each has its first heartbeat, so a worker that dies now is recovered like any other.
    with db.connect() as conn:
        beats = conn.exec_driver_sql("SELECT trial_id FROM trial_heartbeats").scalars().all()
    assert sorted(beats) == sorted(c.trial_id for c in first)


def test_queued_trials_hold_their_places_in_the_budget(storage_url) -> None:
    """With more queued than the budget has left, the oldest run and no new trial is made."""
    study = _study(storage_url)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    db = rdb(study).engine
    got = claim(db, study._study_id, n_trials=3, size=8)
    assert [(c.number, c.queued) for c in got] == [(1, True), (2, True)]
    assert claim(db, study._study_id, n_trials=3, size=8) == []
    assert len(study.get_trials(deepcopy=False)) == 4  # the third queued one still waits


def _claim_in_a_process(url: str, study_id: int, rounds: int, out: "multiprocessing.Queue") -> None:
    db = open_storage(url).engine
    got = []
    for _ in range(rounds):
        got += [c.number for c in claim(db, study_id, n_trials=50, size=7)]
    out.put(got)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
def test_processes_claiming_at_once_share_the_budget_exactly(backend, request, tmp_path) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else f"{backend}_url")
    study = _study(url)
    context = multiprocessing.get_context("fork")  # already imported: starts in milliseconds
    queue: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_claim_in_a_process, args=(url, study._study_id, 4, queue)) for _ in range(4)]
    for w in workers:
        w.start()
    claimed = [n for _ in workers for n in queue.get(timeout=120)]
    for w in workers:
        w.join(timeout=30)
    assert sorted(claimed) == list(range(50))  # no number twice, none lost, not one over
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert sorted(numbers) == list(range(50))
