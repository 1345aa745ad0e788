"""Out of memory for real: a worker under an address-space cap (RLIMIT_AS) in its own process.

The model is the user's (imported by path); in its forward it sees its parameters as views of
the cohort's stacked `[K, P]` tensor and keeps weak references to them. Automatic garbage
collection is off in that process, so only the worker's own clean-up can free the failed
cohort's reference cycles before the halves start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")

# Each member: 64*H + H + 10*H + 10 floats, about 30 MB at H = 100_000; Adam keeps two more
# copies and the gradients one, so a member costs about 120 MB while it trains.
WIDE_MODEL = """
import json, weakref
import torch

SEEN = {}  # cohort size -> weak references to the stacked tensors its members trained with

class Wide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(64, 100_000)
        self.b = torch.nn.Linear(100_000, 10)

    def forward(self, x):
        stacked = self.a.weight._base
        if stacked is not None and stacked.dim() == 2:  # a cohort member: a row of [K, P]
            size = stacked.shape[0]
            if size not in SEEN:  # a cohort's first step: what is left of the larger, failed ones?
                alive = {k: sum(r() is not None for r in refs) for k, refs in SEEN.items() if k > size}
                with open("alive.jsonl", "a") as out:
                    out.write(json.dumps({"size": size, "alive": alive, "refs": {k: len(SEEN[k]) for k in alive}}) + "\\n")
                SEEN[size] = []
            SEEN[size] += [weakref.ref(stacked), weakref.ref(self.b.weight._base)]
        return self.b(torch.relu(self.a(x.flatten(1))))

def make(shape, out):
    return Wide()
"""

STUDY = """
[study]
name = "wide"
[model]
name = "wide:make"
[data]
name = "digits"
limit = 120
[train]
epochs = 1
batch_size = 60
[search]
n_trials = {n}
sampler = "random"
seed = 5
[space]
optimizer = ["adam"]
lr = {{ low = 1e-3, high = 1e-2, log = true }}
"""

# Caps the address space at what is mapped now plus CAP_MB, with automatic collection off.
RUNNER = """
import gc, resource, sys, logging
from hpsearch.run.launcher import LaunchOptions, launch
import hpsearch.run.trials, hpsearch.training.cohort, hpsearch.training.models  # loaded before the cap

logging.basicConfig(level=logging.INFO)
size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) * 1024
cap = size + int(sys.argv[3]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
gc.disable()
summary = launch(LaunchOptions(study_file=sys.argv[1], storage=sys.argv[2], engine="cohort", cohort=int(sys.argv[4])), progress=False)
print("OUTCOME", summary.outcome)
"""


def run_capped(tmp_path: Path, n_trials: int, cap_mb: int, cohort: int) -> tuple[str, optuna.Study]:
    (tmp_path / "wide.py").write_text(WIDE_MODEL)
    (tmp_path / "wide.toml").write_text(STUDY.format(n=n_trials))
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    env = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp_path / "wide.toml"), url, str(cap_mb), str(cohort)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output, optuna.load_study(study_name="wide", storage=url)


def test_the_failed_cohort_is_freed_before_its_halves_train(tmp_path) -> None:
    # Eight members (about 1 GB) do not fit in 700 MB; four (about 500 MB) do, but only once
    # the eight are gone.
    output, study = run_capped(tmp_path, n_trials=8, cap_mb=700, cohort=8)
    assert "out of memory with a cohort of 8; retrying as cohorts of 4" in output, output
    assert "OUTCOME finished" in output, output
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 8
    assert {t.user_attrs["cohort_size"] for t in study.trials} == {4}
    seen = [json.loads(line) for line in (tmp_path / "alive.jsonl").read_text().splitlines()]
    retry = next(s for s in seen if s["size"] == 4)
    assert retry["refs"]["8"] > 0, seen  # the failed cohort trained a step before it ran out
    assert retry["alive"] == {"8": 0}, seen  # and none of its tensors outlived it


def test_a_member_that_does_not_fit_alone_is_requeued_once_then_fails(tmp_path) -> None:
    # Not even one member (about 120 MB while training) fits in 60 MB.
    output, study = run_capped(tmp_path, n_trials=1, cap_mb=60, cohort=2)
    trials = {t.number: t for t in study.trials}
    first = [t for t in trials.values() if "retry_of" not in t.user_attrs]
    assert first and all(t.state.name == "FAIL" for t in trials.values()), output
    for trial in first[:2]:
        assert "out of memory alone (a cohort of 1) on cpu" in trial.user_attrs["error"]
        assert trial.user_attrs["error"].endswith("re-queued once")
        retry = next(t for t in trials.values() if t.user_attrs.get("retry_of") == trial.number)
        assert "out of memory alone on cpu, again after a retry" in retry.user_attrs["error"]
        assert not any(t.user_attrs.get("retry_of") == retry.number for t in trials.values())  # no third try
