"""Process faults: a killed launcher, SIGHUP, SIGTERM. Real processes and signals.

After each fault, a relaunch finishes the study: it reaches its budget exactly, no trial is
left RUNNING, and every trial a fault failed was run again. A killed launcher's launch is
listed as lost once its heartbeat is older than the grace period, and the relaunch closes it.
"""

from __future__ import annotations

import json
import os
import signal
import time

import optuna
import pytest

import sqlalchemy as sa
from click.testing import CliRunner

from hpsearch.cli import cli
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
    retried = {number for t in study.trials for number in t.user_attrs.get("retry_history", [])}  # retries of retries too
    assert {t.number for t in failed} <= retried, "a trial failed by the fault was not run again"


GRACE = 3  # QUICK's grace_period: seconds of silence after which a launch is lost


def launch_states(url: str) -> dict[int, str]:
    """`hpsearch launches faults --json`: each launch's state, by launch id."""
    result = CliRunner().invoke(cli, ["launches", "faults", "--storage", url, "--json"])
    assert result.exit_code == 0, result.output
    return {row["launch"]: row["state"] for row in json.loads(result.stdout)}


def launch_row(url: str, launch_id: int) -> sa.Row:
    (row,) = query(url, sa.select(tables.launches).where(tables.launches.c.launch_id == launch_id))
    return row


def _relaunch(spec, url: str) -> None:  # type: ignore[no-untyped-def]
    again = start("launch", str(spec), "--storage", url, "--engine", "train")
    try:
        output, _ = again.communicate(timeout=120)
    finally:
        again.kill()
    assert again.returncode == 0, output
    _assert_finished_after_fault(url, 6)


def test_kill_9_of_a_launcher_with_workers_ends_its_workers(write_study, sqlite_url) -> None:
    spec = write_study(QUICK)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--workers", "2", "--engine", "train")
    try:
        victims = wait_for(lambda: early_runs(sqlite_url), 90, "a trial in training")
        (launch_id,) = {run.launch_id for run in victims}
        time.sleep(GRACE + 1)
        assert launch_states(sqlite_url) == {launch_id: "running"}  # its beats keep it alive
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        killed = time.time()
        workers = {run.pid for run in query(sqlite_url, sa.select(tables.trial_runs.c.pid))}
        wait_for(lambda: not any(_alive(pid) for pid in workers), 30, "the workers to die with their launcher")
        # Lost once its last beat is older than the grace period; the slack is for a listing
        # that itself takes seconds on a loaded machine.
        wait_for(lambda: launch_states(sqlite_url)[launch_id] == "lost", GRACE + 10, "the launch to be listed as lost")
        print(f"listed as lost {time.time() - killed:.1f}s after the kill")  # a figure for -s runs
    finally:
        launcher.kill()
    study = optuna.load_study(study_name="faults", storage=sqlite_url)
    assert "RUNNING" not in [t.state.name for t in study.trials]  # each worker re-queued its trial
    assert launch_row(sqlite_url, launch_id).ended_at is None  # listing only looks
    _relaunch(spec, sqlite_url)
    closed = launch_row(sqlite_url, launch_id)
    assert closed.outcome == "lost" and closed.ended_at is not None  # the relaunch closed it
    assert launch_states(sqlite_url)[launch_id] == "lost"


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


def test_a_worker_whose_launcher_is_lost_stops_and_requeues(write_study, sqlite_url) -> None:
    """A worker no parent-death signal reaches (a Dask task, another machine or system)
    watches its launch's heartbeat and stops once the launch is lost."""
    spec = write_study(QUICK)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    try:
        (victim,) = wait_for(lambda: early_runs(sqlite_url), 90, "a trial in training")
        launcher.send_signal(signal.SIGKILL)  # one process: no worker to take down with it
        launcher.wait(timeout=10)
    finally:
        launcher.kill()
    assert launch_states(sqlite_url) == {victim.launch_id: "running"}  # not yet past the grace period
    # A worker of the dead launch, as `hpsearch launch` starts them (the launch id is hidden).
    joined = start("worker", "faults", "--launch-id", str(victim.launch_id), "--engine", "train", HPSEARCH_STORAGE=sqlite_url)
    try:
        output, _ = joined.communicate(timeout=60)
    finally:
        joined.kill()
    assert joined.returncode == 0 and "worker stopped (stopped)" in output, output
    assert f"launch {victim.launch_id} lost its launcher" in output and "Traceback" not in output
    closed = launch_row(sqlite_url, victim.launch_id)
    assert closed.outcome == "lost" and closed.ended_at is not None
    study = optuna.load_study(study_name="faults", storage=sqlite_url)
    # The trials it ran itself are re-queued; the dead launcher's trial is stale and left to
    # whichever worker looks next (it may not have been stale yet when this one looked).
    own = {r.trial_id for r in query(sqlite_url, sa.select(tables.trial_runs)) if r.pid == joined.pid}
    assert not [t.number for t in study.trials if t._trial_id in own and t.state.name == "RUNNING"]
    assert finished_count(sqlite_url) < 6  # it stopped instead of finishing the study
    waiting = {n for t in study.trials if t.state.name == "WAITING" for n in t.user_attrs.get("retry_history", [])}
    assert {t.number for t in study.trials if t._trial_id in own and t.state.name == "FAIL"} <= waiting  # each queued to run again
    _relaunch(spec, sqlite_url)
