"""Real database faults during a real two-worker launch: connections killed on PostgreSQL and
MySQL/MariaDB, a SQLite file locked by another process. The study still reaches its budget,
no trial is left running, and every trial a fault failed was run again to its end."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from hpsearch.db.urls import resolve_url, sqlite_path

# Cohorts of 4 trials of about half a second; beats every second, stale after 3 s.
FAULT_STUDY = """
[study]
name = "faulty"
[model]
name = "mlp"
hidden = 16
[data]
name = "digits"
limit = 300
[train]
epochs = 3
batch_size = 32
[search]
n_trials = 16
sampler = "random"
seed = 3
heartbeat_interval = 1
grace_period = 3
[space]
optimizer = ["sgd", "adam"]
lr = { low = 1e-3, high = 0.1, log = true }
"""
N_TRIALS = 16
FAULT_ROUNDS = 8  # injections, every half second, once the first trial runs


def launch(spec: Path, url: str, **env: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "hpsearch", "launch", str(spec), "--storage", url, "--workers", "2", "--engine", "cohort", "--cohort", "4"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})


def trials_started(url: str) -> bool:
    engine = sa.create_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT count(*) FROM trials").scalar())
    except sa.exc.DBAPIError:  # the launcher has not created the tables yet
        return False
    finally:
        engine.dispose()


def inject_while_running(launcher: subprocess.Popen[str], url: str, inject) -> int:  # type: ignore[no-untyped-def]
    """Once trials run, call `inject()` FAULT_ROUNDS times; the number of faults it caused."""
    deadline = time.time() + 60
    while not trials_started(url) and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.1)
    faults = 0
    for _ in range(FAULT_ROUNDS):
        if launcher.poll() is not None:
            break
        faults += inject()
        time.sleep(0.5)
    return faults


def check_the_study(url: str, launcher: subprocess.Popen[str], output: str) -> dict[str, int]:
    assert launcher.returncode == 0, output
    logs = "".join(p.read_text() for p in Path("hpsearch-logs/faulty").glob("*.log"))
    assert "Traceback" not in output + logs, output + logs
    study = optuna.load_study(study_name="faulty", storage=resolve_url(url))
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    done = {t.number for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    rerun = 0
    for trial in failed:  # failed by a fault (no trial here raises), so re-run to its end
        assert "database fault" in trial.user_attrs["error"] or "heartbeats" in trial.user_attrs["error"], trial.user_attrs
        retries = [t for t in study.trials if trial.number in t.user_attrs.get("retry_history", [])]
        assert any(t.number in done for t in retries), (trial.number, [(t.number, t.state.name) for t in retries])
        rerun += 1
    phases = {phase: logs.count(f"database fault while {phase}") for phase in ("asking", "reporting", "telling", "recovering", "counting")}
    return {"trials": len(states), "failed_by_fault": len(failed), "rerun": rerun, **phases}


def _kill_connections(url: str, kind: str):  # type: ignore[no-untyped-def]
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def inject() -> int:
        with admin.connect() as conn:
            if kind == "postgres":
                rows = conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(db)s AND pid <> pg_backend_pid()", {"db": name}
                ).all()
                return sum(1 for (killed,) in rows if killed)
            ids = [row[0] for row in conn.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE db = %(db)s AND id <> CONNECTION_ID()", {"db": name}
            )]
            for connection_id in ids:
                try:
                    conn.exec_driver_sql(f"KILL {int(connection_id)}")
                except sa.exc.DBAPIError:  # it ended by itself in between
                    pass
            return len(ids)

    return inject


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_killed_connections_during_a_launch(kind, request, write_study, capsys) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    launcher = launch(write_study(FAULT_STUDY), url)
    try:
        faults = inject_while_running(launcher, url, _kill_connections(url, kind))
        output, _ = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert faults >= FAULT_ROUNDS  # connections were there to kill, each round
    figures = check_the_study(url, launcher, output)
    with capsys.disabled():
        print(f"\n{kind}: connections killed {faults}, {figures}")


def test_a_sqlite_file_locked_by_another_process(write_study, sqlite_url, capsys) -> None:
    path = sqlite_path(sqlite_url)
    # Workers wait 0.3 s for a lock; the other process holds the file for 1 s at a time.
    launcher = launch(write_study(FAULT_STUDY), sqlite_url, HPSEARCH_SQLITE_BUSY_SECONDS="0.3")
    held = threading.Event()

    def lock_once() -> int:
        other = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(1.0)
            other.execute("ROLLBACK")
        finally:
            other.close()
        return 1

    try:
        faults = inject_while_running(launcher, sqlite_url, lock_once)
        output, _ = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert held.is_set() and faults >= 2  # the launch may end before the last rounds
    figures = check_the_study(sqlite_url, launcher, output)
    assert sum(figures[p] for p in ("asking", "reporting", "telling", "recovering", "counting")) > 0, figures  # the lock was felt
    with capsys.disabled():
        print(f"\nsqlite: locks held {faults}, {figures}")
