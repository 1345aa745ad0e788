"""The Python API: every command is a function that returns data; `import hpsearch` is cheap."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import types
from pathlib import Path

import optuna
import pytest

import hpsearch
from hpsearch.errors import HpsearchError, StudyNotFound
from hpsearch.run.progress import NotebookProgress, in_notebook
from tests.conftest import ROOT


def test_import_hpsearch_loads_neither_torch_nor_optuna() -> None:
    probe = "import json, sys, hpsearch\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert not loaded & {"torch", "optuna", "sqlalchemy", "pydantic", "numpy", "click", "rich"}


def test_every_command_is_a_function() -> None:
    from hpsearch.cli import cli

    commands = {name.replace("-", "_") for name in cli.commands} - {"db"} | {f"db_{name}" for name in cli.commands["db"].commands}
    assert commands <= set(hpsearch.__all__)
    assert all(callable(getattr(hpsearch, name)) for name in commands)


def test_launch_trials_best_export_and_report_return_data(write_study, sqlite_url, tmp_path) -> None:
    spec = str(write_study())
    summary = hpsearch.launch(spec, storage=sqlite_url, n_trials=3, progress=False, engine="train")
    assert summary.ok and summary.counts == {"COMPLETE": 3} and summary.best_config["epochs"] == 2
    rows = hpsearch.trials("tiny", storage=sqlite_url)
    assert [r["number"] for r in rows] == [0, 1, 2] and all(r["state"] == "COMPLETE" for r in rows)
    best = hpsearch.best("tiny", storage=sqlite_url)
    assert best["value"] == max(r["value"] for r in rows) == summary.best_value
    assert hpsearch.studies(storage=sqlite_url)[0]["complete"] == 3
    bundle = hpsearch.export("tiny", storage=sqlite_url, top=2, output=str(tmp_path / "best.toml"))
    assert [c["value"] for c in bundle["configs"]] == sorted((r["value"] for r in rows), reverse=True)[:2]
    assert hpsearch.load_config(tmp_path / "best.toml") == bundle["configs"][0]["config"]
    assert hpsearch.report("tiny", storage=sqlite_url).rows
    checked = hpsearch.check(spec, quick=True)
    assert checked.file.spec.study.name == "tiny" and not checked.trained
    with pytest.raises(StudyNotFound, match="no study 'nope'"):
        hpsearch.best("nope", storage=sqlite_url)
    with pytest.raises(HpsearchError, match="no such study file"):
        hpsearch.launch("missing.toml", storage=sqlite_url, progress=False)


def test_a_notebook_gets_tqdms_bar(write_study, sqlite_url, monkeypatch) -> None:
    assert not in_notebook()

    class ZMQInteractiveShell:  # what a Jupyter kernel's get_ipython() returns
        pass

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    assert in_notebook()
    shown: list[type] = []
    real = NotebookProgress.__enter__

    def enter(self):
        shown.append(type(self))
        self.file = buffer
        return real(self)

    buffer = io.StringIO()
    monkeypatch.setattr(NotebookProgress, "__enter__", enter)
    summary = hpsearch.launch(str(write_study()), storage=sqlite_url, engine="train")
    assert summary.ok and shown == [NotebookProgress]
    assert "tiny: 100%" in buffer.getvalue() and "4/4" in buffer.getvalue() and "best accuracy=" in buffer.getvalue()


def test_the_notebook_bar_counts_finished_trials_and_shows_the_best(sqlite_url) -> None:
    study = optuna.create_study(storage=sqlite_url, study_name="bar", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    buffer = io.StringIO()
    with NotebookProgress(study, 3, "accuracy", file=buffer) as bar:
        study.add_trial(optuna.trial.create_trial(value=0.75))
        bar.refresh()
        assert bar._tqdm.n == 2
    assert "2/3" in buffer.getvalue() and "best accuracy=0.7500 (trial 1)" in buffer.getvalue()
    assert Path(sqlite_url.removeprefix("sqlite:///")).exists()
