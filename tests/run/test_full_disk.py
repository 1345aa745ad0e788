"""A full disk under `--log-dir`: a small tmpfs mounted by the test (the tests run as root).

Full before the launch: a one-line error before anything is written, and the study name
stays free. Full during the launch: the log stops, the trials go on, the budget is reached.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

import sqlalchemy as sa

from hpsearch.db import tables
from tests.run.test_workers import query, start, wait_for

STUDY = """
[study]
name = "disk"
[model]
name = "mlp"
hidden = 16
[data]
name = "digits"
limit = 400
[train]
epochs = 5
batch_size = 16
[search]
n_trials = 6
sampler = "random"
seed = 5
[space]
optimizer = ["sgd", "adam"]
lr = { low = 1e-3, high = 0.1, log = true }
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted afterwards."""
    folder = tmp_path / "logs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(disk: Path) -> None:
    """Write until the disk has no byte left."""
    with open(disk / "filler", "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    with pytest.raises(OSError):
        (disk / "probe").write_bytes(b"x")


def test_a_full_log_disk_is_one_line_before_anything_runs(small_disk, write_study, sqlite_url) -> None:
    spec = write_study(STUDY)
    fill(small_disk)
    refused = start("launch", str(spec), "--storage", sqlite_url, "--workers", "2", "--log-dir", str(small_disk))
    output, _ = refused.communicate(timeout=180)
    assert refused.returncode != 0
    assert output.strip() == (
        f"Error: --log-dir {small_disk}: cannot write logs in {small_disk / 'disk'} (No space left on device); "
        "free some space or pass a writable --log-dir"
    ), output
    assert "disk" not in [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)]
    (small_disk / "filler").unlink()
    again = start("launch", str(spec), "--storage", sqlite_url, "--n-trials", "1", "--log-dir", str(small_disk))
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_log_disk_that_fills_during_a_launch_loses_log_lines_not_trials(workers, small_disk, write_study, sqlite_url) -> None:
    spec = write_study(STUDY)
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--workers", workers, "--engine", "train", "--log-dir", str(small_disk))
    try:
        # Before the first trial ends, so the first line of each log finds no room: a file
        # with a page of its own would take lines until that page is full.
        wait_for(lambda: query(sqlite_url, sa.select(tables.optuna_trials.c.trial_id)), 120, "the first trial")
        fill(small_disk)
        full_since = dt.datetime.now()
        output, _ = launcher.communicate(timeout=180)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output
    assert "Traceback" not in output and "Logging error" not in output, output
    study = optuna.load_study(study_name="disk", storage=sqlite_url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 6 and len(states) == 6, states
    after = [t.number for t in study.trials if t.datetime_complete > full_since]
    assert after, "no trial ran on the full disk; the test tested nothing"
    logged = "".join(log.read_text() for log in (small_disk / "disk").iterdir())
    assert logged.count(" complete ") < 6, f"no log line was lost; the test tested nothing: {logged}"
    if workers == "1":  # the log is written by the launcher itself, which says once that it stopped
        assert output.count("cannot write the log") == 1, output
    print(f"{workers} worker(s): {len(after)} of 6 trials finished on the full disk; states {states}")
