"""A user error in a cohort fails the members it hits and counts once towards the
failures-in-a-row rule (five in a row stop the worker)."""

from __future__ import annotations

import optuna
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.run.worker import MAX_FAILURES_IN_A_ROW
from tests.conftest import TINY_STUDY

BROKEN = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        if x.shape[0] == 30:  # a training batch; the launch's own check uses fewer examples
            raise ValueError("a bug in the user's model")
        return self.fc(x.flatten(1))

def make(shape, out):
    return Net()
"""


def test_a_failed_cohort_counts_once(write_study, sqlite_url, tmp_path, monkeypatch) -> None:
    (tmp_path / "broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = TINY_STUDY.replace('name = "mlp"\nhidden = 16', 'name = "broken:make"')
    spec = write_study(text, **{"batch_size = 64": "batch_size = 30", "n_trials = 4": "n_trials = 100"})
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--engine", "cohort", "--cohort", "4"])
    assert result.exit_code == 1, result.output
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    assert all(t.state.name == "FAIL" and "a bug in the user's model" in t.user_attrs["error"] for t in trials)
    # Five cohorts of four, not two: each failed cohort counted once.
    assert len(trials) == MAX_FAILURES_IN_A_ROW * 4
