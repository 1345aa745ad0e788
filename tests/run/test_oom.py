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
    env = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576", "PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": "/usr/bin:/bin"}
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
    assert max(t.user_attrs["cohort_size"] for t in study.trials) < 8
    seen = [json.loads(line) for line in (tmp_path / "alive.jsonl").read_text().splitlines()]
    assert any(n > 0 for s in seen for n in s["refs"].values()), seen  # a failed cohort trained a step
    # ... and, as each smaller cohort began, no tensor of a larger failed one outlived it.
    assert all(n == 0 for s in seen for n in s["alive"].values()), seen
