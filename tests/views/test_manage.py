"""`hpsearch launches`, `stop` and `delete`, against real launches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import optuna
import sqlalchemy as sa
from click.testing import CliRunner, Result

from hpsearch.cli import cli
from hpsearch.db.tables import launches as launch_table
from hpsearch.db.tables import trial_runs


def run(*args: object, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def test_launches_lists_each_launch_with_its_workers(write_study, sqlite_url) -> None:
    assert run("launch", write_study(), "--storage", sqlite_url, "--workers", "2").exit_code == 0
    result = run("launches", "tiny", "--storage", sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["study"] == "tiny" and row["state"] == "finished" and row["n_workers"] == 2
    assert row["silent_seconds"] is None  # a launch that ended beats no more
    assert 1 <= len(row["workers"]) <= 2 and sum(w["trial_runs"] for w in row["workers"]) >= 4
    assert all(w["running"] == 0 for w in row["workers"])
    assert "tiny" in run("launches", "--storage", sqlite_url).stdout
    missing = run("launches", "nope", "--storage", sqlite_url)
    assert missing.exit_code != 0 and "no study 'nope'" in missing.stderr


def test_delete_asks_then_removes_the_study_and_hpsearchs_rows(write_study, sqlite_url) -> None:
    path = write_study()
    assert run("launch", path, "--storage", sqlite_url).exit_code == 0
    kept = run("delete", "tiny", "--storage", sqlite_url, input="n\n")
    assert kept.exit_code != 0 and "tiny" in [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)]
    done = run("delete", "tiny", "--storage", sqlite_url, "--yes")
    assert done.exit_code == 0 and "deleted study 'tiny' (4 trials)" in done.stdout
    assert optuna.get_all_study_summaries(sqlite_url) == []
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(launch_table)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(trial_runs)).scalar() == 0
    engine.dispose()
    # The name is free again: the same file launches from scratch.
    assert run("launch", path, "--storage", sqlite_url).exit_code == 0
    assert len(optuna.load_study(study_name="tiny", storage=sqlite_url).trials) == 4


def test_stop_from_another_shell_ends_the_launch_and_requeues_its_trials(write_study, sqlite_url, tmp_path) -> None:
    path = write_study(**{"epochs = 2": "epochs = 400", "n_trials = 4": "n_trials = 50"})
    env = {**os.environ, "HPSEARCH_STORAGE": sqlite_url}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "launch", str(path), "--workers", "2", "--engine", "train"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until both workers train
            rows = run("launches", "tiny", "--storage", sqlite_url, "--json")
            if rows.exit_code == 0 and '"running": 1' in rows.stdout and rows.stdout.count('"running": 1') >= 2:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the workers never started a trial")
        stopped = run("stop", "tiny", "--storage", sqlite_url)
        assert stopped.exit_code == 0 and "to stop" in stopped.stdout
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert "Traceback" not in output
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    interrupted = [t for t in study.trials if t.user_attrs.get("error") == "worker was stopped"]
    assert interrupted, "the running trials end as interrupted"
    queued = {t.user_attrs.get("retry_of") for t in study.trials if t.state == optuna.trial.TrialState.WAITING}
    assert {t.number for t in interrupted} <= queued  # each one waits to run again
    assert "no running launch" in run("stop", "tiny", "--storage", sqlite_url).stdout


def test_delete_refuses_a_study_with_a_running_launch_unless_forced(write_study, sqlite_url) -> None:
    assert run("launch", write_study(), "--storage", sqlite_url).exit_code == 0
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # what a launcher killed with kill -9 leaves behind
        conn.execute(launch_table.update().values(outcome="running"))
    engine.dispose()
    refused = run("delete", "tiny", "--storage", sqlite_url, "--yes")
    assert refused.exit_code != 0 and "hpsearch stop tiny" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert run("delete", "tiny", "--storage", sqlite_url, "--yes", "--force").exit_code == 0
    assert optuna.get_all_study_summaries(sqlite_url) == []


def test_a_launch_whose_launcher_stopped_beating_is_lost_and_blocks_nothing(write_study, sqlite_url) -> None:
    import datetime as dt

    import hpsearch

    assert run("launch", write_study(), "--storage", sqlite_url).exit_code == 0
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # what a launcher killed a minute ago (tiny's grace period) leaves behind
        long_ago = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=61)
        conn.execute(launch_table.update().values(outcome="running", ended_at=None, heartbeat_at=long_ago))
    engine.dispose()
    (row,) = json.loads(run("launches", "tiny", "--storage", sqlite_url, "--json").stdout)
    assert row["state"] == "lost" and row["silent_seconds"] >= 60  # the database clock counts whole seconds
    assert [r["state"] for r in hpsearch.launches("tiny", storage=sqlite_url)] == ["lost"]
    assert "no running launch" in run("stop", "tiny", "--storage", sqlite_url).stdout  # and closes it
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        closed = conn.execute(sa.select(launch_table)).one()
    engine.dispose()
    assert closed.outcome == "lost" and closed.ended_at is not None
    assert run("delete", "tiny", "--storage", sqlite_url, "--yes").exit_code == 0  # no --force needed
