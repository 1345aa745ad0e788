"""Misuse a new user meets: foreign studies, launches that fail before a trial, names, logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

from hpsearch.cli import cli
from tests.conftest import TINY_STUDY


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_a_plain_optuna_study_of_the_same_name_is_not_adopted(write_study, sqlite_url) -> None:
    foreign = optuna.create_study(study_name="tiny", storage=sqlite_url, direction="maximize")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    error = one_line_error(run("launch", write_study(), "--storage", sqlite_url))
    assert "not created by hpsearch" in error and "hpsearch delete tiny" in error
    assert len(optuna.load_study(study_name="tiny", storage=sqlite_url).trials) == 2  # untouched


def test_a_multi_objective_study_is_listed_not_fatal(write_study, sqlite_url) -> None:
    assert run("launch", write_study(), "--storage", sqlite_url).exit_code == 0
    other = optuna.create_study(study_name="pareto", storage=sqlite_url, directions=["minimize", "maximize"])
    other.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    rows = {r["study"]: r for r in json.loads(run("studies", "--storage", sqlite_url, "--json").stdout)}
    assert rows["pareto"]["direction"] == "multi-objective" and rows["pareto"]["best_value"] is None
    assert rows["tiny"]["complete"] == 4
    table = run("studies", "--storage", sqlite_url)
    assert table.exit_code == 0 and "multi-objective" in table.stdout


@pytest.mark.parametrize(
    "broken",
    [
        {'sampler = "random"': 'sampler = "random"\nsampler_options = { no_such_option = 1 }'},
        {'name = "mlp"\nhidden = 16': 'name = "tests.user_code:no_such_factory"'},
    ],
    ids=["sampler-options", "factory-path"],
)
def test_a_launch_that_fails_before_any_trial_leaves_the_name_usable(broken, write_study, sqlite_url) -> None:
    failed = run("launch", write_study(**broken), "--storage", sqlite_url)
    assert failed.exit_code != 0 and "Traceback" not in failed.output
    assert "tiny" not in [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)]
    fixed = run("launch", write_study(), "--storage", sqlite_url)
    assert fixed.exit_code == 0, fixed.output


def test_an_unwritable_log_dir_is_one_line_and_leaves_nothing(write_study, sqlite_url, tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    error = one_line_error(run("launch", write_study(), "--storage", sqlite_url, "--log-dir", blocked))
    assert error.startswith(f"Error: --log-dir {blocked}: cannot write logs")
    assert optuna.get_all_study_summaries(sqlite_url) == []
    assert run("launch", write_study(), "--storage", sqlite_url).exit_code == 0


def test_a_study_file_without_a_name_is_named_after_the_file(write_study, sqlite_url) -> None:
    spec = write_study(TINY_STUDY.replace('[study]\nname = "tiny"\n', ""), name="unnamed.toml")
    assert run("check", spec).exit_code == 0
    result = run("launch", spec, "--storage", sqlite_url, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "Study unnamed: 4/4" in result.stdout


def test_a_very_long_study_name_is_one_line_and_the_longest_allowed_launches(write_study, storage_url) -> None:
    """On SQLite, PostgreSQL and MySQL: every column the name is written to holds 200 characters."""
    error = one_line_error(run("launch", write_study(**{'name = "tiny"': f'name = "{"n" * 300}"'}), "--storage", storage_url))
    assert "study.name: at most 200 characters, got 300" in error
    wide = one_line_error(run("launch", write_study(**{'name = "tiny"': f'name = "{"é" * 150}"'}), "--storage", storage_url))
    assert "study.name: at most 255 bytes in UTF-8 (its log folder is named after it), got 300" in wide
    longest = "n" * 199 + "é"  # and not one byte less on a server that counts bytes
    done = run("launch", write_study(name="long.toml", **{'name = "tiny"': f'name = "{longest}"'}), "--storage", storage_url, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["counts"] == {"COMPLETE": 4}
    from hpsearch.db import tables
    from hpsearch.db.urls import resolve_url
    import sqlalchemy as sa

    engine = sa.create_engine(resolve_url(storage_url))
    with engine.connect() as conn:
        assert conn.execute(sa.select(tables.launches.c.study_name)).scalars().all() == [longest]
        assert conn.execute(sa.select(tables.study_files.c.name)).scalars().all() == [longest]
    engine.dispose()
    assert [s.study_name for s in optuna.get_all_study_summaries(resolve_url(storage_url))] == [longest]
    (listed,) = json.loads(run("launches", longest, "--storage", storage_url, "--json").stdout)
    assert listed["study"] == longest and listed["state"] == "finished"


def test_a_relaunch_with_another_precision_is_refused(write_study, sqlite_url) -> None:
    spec = write_study()
    assert run("launch", spec, "--storage", sqlite_url, "--n-trials", "2").exit_code == 0
    error = one_line_error(run("launch", spec, "--storage", sqlite_url, "--precision", "bf16"))
    assert "ran with --precision fp32; relaunch with --precision fp32" in error


def test_a_timeout_that_leaves_the_study_unfinished_exits_1(write_study, sqlite_url) -> None:
    result = run("launch", write_study(), "--storage", sqlite_url, "--n-trials", "500", "--timeout", "0.5")
    assert result.exit_code == 1, result.output
    assert "timeout" in result.stdout


def test_log_files_are_named_by_database(write_study, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        assert run("launch", write_study(), "--storage", url, "--n-trials", "1", "--log-dir", logs).exit_code == 0
    names = sorted(os.listdir(logs / "tiny"))
    assert len(names) == 2 and names[0].startswith("a-") and names[1].startswith("b-"), names


PICKY = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        if x.shape[0] > 8:  # the model check runs 8 examples; the engine timing a full batch
            raise ValueError("batches over 8 are not supported")
        return self.fc(x.flatten(1))
"""


def test_a_model_that_raises_while_the_engines_are_timed_is_one_line(write_study, sqlite_url, tmp_path) -> None:
    (tmp_path / "picky.py").write_text(PICKY)
    spec = write_study(**{'name = "mlp"\nhidden = 16': 'name = "picky:Net"'})
    error = one_line_error(run("launch", spec, "--storage", sqlite_url, "--engine", "auto", "--json"))  # no progress lines
    assert error == (
        f"Error: {spec}: model.name: picky:Net: a training step on a batch of 64 (timed for --engine auto) "
        "raised ValueError: batches over 8 are not supported (at picky.py:12 in forward)"
    )
    assert optuna.get_all_study_summaries(sqlite_url) == []  # nothing kept: the name stays usable
    checked = CliRunner().invoke(cli, ["check", str(spec)])
    assert checked.exit_code == 1 and checked.stderr.strip().splitlines()[-1] == error
