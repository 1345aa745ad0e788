"""Many workers: placement, killed workers, stop signals, joining, Dask. Real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import torch
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.db import tables
from hpsearch.db.urls import resolve_url
from hpsearch.errors import HpsearchError
from hpsearch.run.launcher import LaunchOptions, launch
from hpsearch.run.processes import plan_slots

# Trials of about a second each (the reference engine, 4 epochs), beating every second and
# declared stale after 3 seconds of silence.
SLOW_STUDY = """
[study]
name = "busy"
[model]
name = "mlp"
hidden = 32
[data]
name = "digits"
[train]
epochs = 4
batch_size = 16
[search]
n_trials = 10
sampler = "random"
seed = 1
heartbeat_interval = 1
grace_period = 3
[space]
optimizer = ["sgd", "adam"]
lr = { low = 1e-3, high = 0.1, log = true }
"""


def start(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def query(url: str, statement: sa.Executable) -> list[sa.Row]:
    engine = sa.create_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(statement))
    except sa.exc.DBAPIError:  # the launcher has not created the tables yet
        return []
    finally:
        engine.dispose()


def running_runs(url: str) -> list[sa.Row]:
    return query(url, sa.select(tables.trial_runs).where(tables.trial_runs.c.outcome == "running"))


def early_runs(url: str) -> list[sa.Row]:
    """Runs whose trial is still RUNNING and has reported at most one epoch, newest first.

    A worker tells Optuna before it closes its run row, so a "running" row alone may belong to
    a trial that has already finished; killing that worker would test nothing.
    """
    runs, trials, values = tables.trial_runs, tables.optuna_trials, tables.optuna_intermediate_values
    reported = sa.select(sa.func.count()).where(values.c.trial_id == runs.c.trial_id).scalar_subquery()
    statement = (
        sa.select(runs)
        .join(trials, trials.c.trial_id == runs.c.trial_id)
        .where(runs.c.outcome == "running", trials.c.state == optuna.trial.TrialState.RUNNING, reported <= 1)
        .order_by(runs.c.started_at.desc())
    )
    return query(url, statement)


def finished_count(url: str) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    rows = query(url, sa.select(sa.func.count()).select_from(tables.optuna_trials).where(tables.optuna_trials.c.state.in_(states)))
    return int(rows[0][0]) if rows else 0


def kill_a_worker_midrun(args: list[str], url: str, timeout: float) -> tuple[sa.Row, str, int]:
    """Launch, kill -9 the process running a trial once two have finished, wait for the end."""
    launcher = start(*args)
    try:
        victim = wait_for(lambda: finished_count(url) >= 2 and early_runs(url), timeout, "a trial early in flight")[0]
        os.kill(victim.pid, signal.SIGKILL)
        output, _ = launcher.communicate(timeout=2 * timeout)
    finally:
        launcher.kill()
    return victim, output, launcher.returncode


def assert_finished_with_retry(url: str, killed_trial_id: int, n_trials: int) -> None:
    study = optuna.load_study(study_name="busy", storage=resolve_url(url))
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == n_trials
    assert "RUNNING" not in states
    killed = next(t for t in study.trials if t._trial_id == killed_trial_id)
    assert killed.state.name == "FAIL"
    assert killed.user_attrs["error"] in ("worker stopped sending heartbeats", "worker was killed mid-trial")
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == killed.number]
    assert retries and retries[0].state.name in ("COMPLETE", "PRUNED")
    assert retries[0].params == killed.params  # the same trial, run again
    assert retries[0].user_attrs["config"]["seed"] == killed.user_attrs["config"]["seed"]
    (run,) = query(url, sa.select(tables.trial_runs).where(tables.trial_runs.c.trial_id == killed_trial_id))
    assert run.outcome == "lost"


# -- placement -----------------------------------------------------------------------------------


def test_auto_cohorts_divide_the_card_between_the_workers_that_share_it(monkeypatch) -> None:
    from hpsearch.run.engine import cohort_for_memory
    from hpsearch.training.device import workers_sharing_the_gpu

    assert cohort_for_memory(100 * 2**20, 2**20, 1) == 80
    assert cohort_for_memory(100 * 2**20, 2**20, 4) == 20  # --per-gpu 4: a quarter each
    monkeypatch.setenv("HPSEARCH_GPU_SHARE", "3")
    assert workers_sharing_the_gpu() == 3


def test_slots_per_gpu_with_an_injected_gpu_count() -> None:
    assert plan_slots(3, None, 1, gpu_count=0) == [None, None, None]
    assert plan_slots(1, "all", 2, gpu_count=3) == ["0", "0", "1", "1", "2", "2"]
    assert plan_slots(1, "1,3", 1, gpu_count=4) == ["1", "3"]
    with pytest.raises(HpsearchError, match=r"--gpus 0,4: GPU 4 does not exist; this machine has 4 \(numbered 0..3\)"):
        plan_slots(1, "0,4", 1, gpu_count=4)
    with pytest.raises(HpsearchError, match="expected distinct GPU numbers"):
        plan_slots(1, "1,1", 1, gpu_count=4)
    with pytest.raises(HpsearchError, match="no GPU is visible"):
        plan_slots(1, "all", 1, gpu_count=0)
    with pytest.raises(HpsearchError, match="use --workers or --gpus, not both"):
        plan_slots(2, "0", 1, gpu_count=1)


def test_the_launcher_pins_each_worker_process(write_study, sqlite_url) -> None:
    """Four real worker processes on two (injected) GPUs, two per GPU, each pinned by the launcher."""
    spec = write_study(SLOW_STUDY.replace("n_trials = 10", "n_trials = 8").replace("epochs = 4", "epochs = 1"))
    summary = launch(
        LaunchOptions(study_file=str(spec), storage=sqlite_url, gpus="all", per_gpu=2, device="cpu", gpu_count=2, engine="train"),
        progress=False,
    )
    assert summary.outcome == "finished" and summary.counts["COMPLETE"] == 8
    runs = query(sqlite_url, sa.select(tables.trial_runs))
    slot_of_pid: dict[int, set[str]] = {}
    for run in runs:
        slot_of_pid.setdefault(run.pid, set()).add(run.device)
    assert all(len(devices) == 1 for devices in slot_of_pid.values())  # a worker never moves
    per_slot: dict[str, int] = {}
    for (device,) in slot_of_pid.values():
        per_slot[device] = per_slot.get(device, 0) + 1
    assert set(per_slot) <= {"cpu (CUDA_VISIBLE_DEVICES=0)", "cpu (CUDA_VISIBLE_DEVICES=1)"}
    assert all(n <= 2 for n in per_slot.values())
    (launch_row,) = query(sqlite_url, sa.select(tables.launches))
    assert launch_row.n_workers == 4 and sorted(__import__("json").loads(launch_row.devices)) == [
        "cpu (CUDA_VISIBLE_DEVICES=0)", "cpu (CUDA_VISIBLE_DEVICES=0)", "cpu (CUDA_VISIBLE_DEVICES=1)", "cpu (CUDA_VISIBLE_DEVICES=1)"
    ]
    logs = sorted(Path("hpsearch-logs/busy").glob("*-launch-1-worker-*.log"))
    assert len(logs) == 4 and all("worker stopped" in log.read_text() for log in logs)
    assert all("GPU shared by 2 workers" in log.read_text() for log in logs)  # what --cohort auto divides by


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_workers_share_one_real_gpu(write_study, sqlite_url) -> None:
    spec = write_study(SLOW_STUDY.replace("n_trials = 10", "n_trials = 6"))
    summary = launch(LaunchOptions(study_file=str(spec), storage=sqlite_url, gpus="0", per_gpu=2), progress=False)
    assert summary.outcome == "finished" and summary.counts["COMPLETE"] == 6
    devices = {run.device for run in query(sqlite_url, sa.select(tables.trial_runs))}
    assert len(devices) == 1 and devices.pop().endswith("(CUDA_VISIBLE_DEVICES=0)")
    assert len({run.pid for run in query(sqlite_url, sa.select(tables.trial_runs))}) == 2


# -- killed workers and stop signals ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_one_of_two_workers(backend, request, write_study) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    args = ["launch", str(write_study(SLOW_STUDY)), "--storage", url, "--workers", "2", "--engine", "train"]
    victim, output, code = kill_a_worker_midrun(args, url, 120)
    assert code == 0, output
    assert_finished_with_retry(url, victim.trial_id, 10)


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_cleanly_and_a_second_launch_finishes(write_study, sqlite_url) -> None:
    # Trials three times as long, so the stop reaches the workers mid-trial.
    spec = write_study(SLOW_STUDY.replace("n_trials = 10", "n_trials = 14").replace("epochs = 4", "epochs = 12"))
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--workers", "2", "--engine", "train")
    try:
        wait_for(lambda: finished_count(sqlite_url) >= 2 and early_runs(sqlite_url), 120, "a trial early in flight")
        stopped_at = time.time()
        launcher.send_signal(signal.SIGTERM)
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert time.time() - stopped_at < 30, "the launcher took too long to stop"
    assert launcher.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    study = optuna.load_study(study_name="busy", storage=sqlite_url)
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and states.count("COMPLETE") < 14
    interrupted = [t for t in study.trials if t.state.name == "FAIL"]
    assert interrupted and all(t.user_attrs["error"] == "worker was stopped" for t in interrupted)
    assert states.count("WAITING") >= len(interrupted)  # re-queued for the next launch

    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--engine", "train"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="busy", storage=sqlite_url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 14 and "RUNNING" not in states
    retried = {t.user_attrs.get("retry_of") for t in study.trials if t.state.name == "COMPLETE"}
    assert {t.number for t in interrupted} <= retried


def test_sigterm_to_a_single_in_process_worker(write_study, sqlite_url) -> None:
    spec = write_study(SLOW_STUDY)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    try:
        wait_for(lambda: finished_count(sqlite_url) >= 1 and running_runs(sqlite_url), 120, "a trial in flight")
        launcher.send_signal(signal.SIGTERM)
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 130, output
    study = optuna.load_study(study_name="busy", storage=sqlite_url)
    assert "RUNNING" not in [t.state.name for t in study.trials]
    assert not running_runs(sqlite_url)


@pytest.mark.slow
def test_a_worker_joins_a_running_study_from_the_command_line(write_study, sqlite_url) -> None:
    spec = write_study(SLOW_STUDY.replace("n_trials = 10", "n_trials = 8"))
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    try:
        wait_for(lambda: finished_count(sqlite_url) >= 1, 120, "the first trial")
        joined = start("worker", "busy", "--engine", "train", HPSEARCH_STORAGE=sqlite_url)
        joined_output, _ = joined.communicate(timeout=240)
        launcher.communicate(timeout=240)
    finally:
        launcher.kill()
    assert joined.returncode == 0, joined_output
    assert "worker stopped (budget)" in joined_output
    study = optuna.load_study(study_name="busy", storage=sqlite_url)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 8
    pids = {run.pid for run in query(sqlite_url, sa.select(tables.trial_runs))}
    assert len(pids) == 2  # both the launcher's worker and the joined one ran trials
    launches = query(sqlite_url, sa.select(tables.launches))
    assert len(launches) == 2 and {row.outcome for row in launches} == {"finished"}


def test_a_joining_worker_stops_when_the_budget_is_met(write_study, sqlite_url) -> None:
    from tests.conftest import TINY_STUDY

    assert CliRunner().invoke(cli, ["launch", str(write_study(TINY_STUDY)), "--storage", sqlite_url]).exit_code == 0
    result = CliRunner().invoke(cli, ["worker", "tiny", "--storage", sqlite_url])
    assert result.exit_code == 0 and "worker stopped (budget): {}" in result.stderr


def test_out_of_memory_fails_the_trial_and_the_search_goes_on(write_study, sqlite_url, tmp_path) -> None:
    (tmp_path / "hungry.py").write_text(
        "import torch\n"
        "class Hungry(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        if self.training and x.shape[0] > 32:\n"
        "            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')\n"
        "        return self.fc(x.flatten(1))\n"
        "def make(shape, out):\n"
        "    return Hungry()\n"
    )
    from tests.conftest import TINY_STUDY

    spec = write_study(TINY_STUDY.replace('name = "mlp"\nhidden = 16', 'name = "hungry:make"').replace("batch_size = 64", "").replace("n_trials = 4", "n_trials = 6") + "batch_size = [16, 20, 24, 64]\n")
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--engine", "train"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs["error"].startswith("OutOfMemoryError: CUDA out of memory") for t in failed)
    assert all(t.params["batch_size"] == 64 for t in failed)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 6
    errors = query(sqlite_url, sa.select(tables.trial_runs.c.error).where(tables.trial_runs.c.outcome == "failed"))
    assert errors and all("Traceback" in e.error and "OutOfMemoryError" in e.error for e in errors)


# -- Dask ----------------------------------------------------------------------------------------


def test_sqlite_is_refused_for_a_remote_cluster(write_study, sqlite_url) -> None:
    result = CliRunner().invoke(cli, ["launch", str(write_study(SLOW_STUDY)), "--storage", sqlite_url, "--dask", "tcp://10.0.0.1:8786"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"Error: --dask tcp://10.0.0.1:8786: Dask workers on other machines cannot share the SQLite file "
        f"{sqlite_url}; use PostgreSQL or MySQL (--storage postgresql://... or mysql://...)"
    )
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


@pytest.mark.slow
def test_dask_local_cluster_survives_a_killed_worker(write_study, postgres_url) -> None:
    args = ["launch", str(write_study(SLOW_STUDY)), "--storage", postgres_url, "--dask", "local:2", "--engine", "train"]
    victim, output, code = kill_a_worker_midrun(args, postgres_url, 180)
    assert code == 0, output
    assert_finished_with_retry(postgres_url, victim.trial_id, 10)
    hosts = {run.pid for run in query(postgres_url, sa.select(tables.trial_runs))}
    assert len(hosts) >= 2
