"""Process faults: a killed launcher, SIGHUP, SIGTERM. Real processes and signals.

After each fault, a relaunch finishes the study: it reaches its budget exactly, no trial is
left RUNNING, and every trial a fault failed was run again.
"""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest

import sqlalchemy as sa

from hpsearch.db import tables
from tests.run.test_workers import finished_count, query, start, wait_for

EPOCHS = 40  # about a second per trial: a wide window to send a fault while a trial trains


def early_runs(url: str) -> list[sa.Row]:
    """Runs whose trial is RUNNING and has at least half of its epochs still to go."""
    runs, trials, values = tables.trial_runs, tables.optuna_trials, tables.optuna_intermediate_values
    reported = sa.select(sa.func.count()).where(values.c.trial_id == runs.c.trial_id).scalar_subquery()
    statement = (
        sa.select(runs)
        .join(trials, trials.c.trial_id == runs.c.trial_id)
        .where(runs.c.outcome == "running", trials.c.state == optuna.trial.TrialState.RUNNING, reported < EPOCHS // 2)
        .order_by(runs.c.started_at.desc())
    )
    return query(url, statement)

QUICK = """
[study]
name = "faults"
[model]
name = "mlp"
hidden = 16
[data]
name = "digits"
limit = 400
[train]
epochs = 40
batch_size = 16
[search]
n_trials = 6
sampler = "random"
seed = 3
heartbeat_interval = 1
grace_period = 3
[space]
optimizer = ["sgd", "adam"]
lr = { low = 1e-3, high = 0.1, log = true }
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
        return stat.read().split(")")[-1].split()[0] != "Z"


def _assert_finished_after_fault(url: str, n_trials: int) -> None:
    study = optuna.load_study(study_name="faults", storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == n_trials, states
    assert "RUNNING" not in states and "WAITING" not in states
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    retried = {t.user_attrs.get("retry_of") for t in study.trials}
    assert {t.number for t in failed} <= retried, "a trial failed by the fault was not run again"


def _relaunch(spec, url: str) -> None:  # type: ignore[no-untyped-def]
    again = start("launch", str(spec), "--storage", url, "--engine", "train")
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output
    _assert_finished_after_fault(url, 6)


def test_kill_9_of_a_launcher_with_workers_ends_its_workers(write_study, sqlite_url) -> None:
    spec = write_study(QUICK)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--workers", "2", "--engine", "train")
    try:
        victims = wait_for(lambda: early_runs(sqlite_url), 90, "a trial in training")
        workers = {run.pid for run in victims}
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        wait_for(lambda: not any(_alive(pid) for pid in workers), 30, "the workers to die with their launcher")
    finally:
        launcher.kill()
    study = optuna.load_study(study_name="faults", storage=sqlite_url)
    assert "RUNNING" not in [t.state.name for t in study.trials]  # each worker re-queued its trial
    _relaunch(spec, sqlite_url)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_and_sigterm_stop_a_launch_and_requeue(signum, workers, write_study, sqlite_url) -> None:
    spec = write_study(QUICK)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--workers", workers, "--engine", "train")
    try:
        wait_for(lambda: finished_count(sqlite_url) >= 1 and early_runs(sqlite_url), 90, "a trial in training")
        launcher.send_signal(signum)
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 130, output
    assert "Traceback" not in output
    study = optuna.load_study(study_name="faults", storage=sqlite_url)
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states
    stopped = [t for t in study.trials if t.state.name == "FAIL"]
    assert stopped and all(t.user_attrs["error"] == "worker was stopped" for t in stopped)
    _relaunch(spec, sqlite_url)


def test_sighup_to_a_joined_worker_requeues_its_trial(write_study, sqlite_url) -> None:
    spec = write_study(QUICK)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    try:
        wait_for(lambda: finished_count(sqlite_url) >= 1, 90, "the first trial")
        joined = start("worker", "faults", "--engine", "train", HPSEARCH_STORAGE=sqlite_url)
        wait_for(lambda: any(r.pid == joined.pid for r in early_runs(sqlite_url)), 90, "the joined worker training")
        joined.send_signal(signal.SIGHUP)
        output, _ = joined.communicate(timeout=60)
        assert joined.returncode == 0 and "worker stopped (stopped)" in output, output
        launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    _assert_finished_after_fault(sqlite_url, 6)
    time.sleep(0)
