"""Misuse a new user can fall into, tried through real processes: each ends in one clear
line or in distinct work, never in silence or in repeated work."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

DRAW = """
import sys
from hpsearch.config.spec import load_study_file
from hpsearch.search.samplers import make_sampler
import optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
spec = load_study_file(sys.argv[1]).spec
worker = None if sys.argv[2] == "hand" else int(sys.argv[2])
study = optuna.create_study(sampler=make_sampler(spec, worker=worker, offset=0))
print([round(study.ask().suggest_float("lr", 1e-3, 0.3, log=True), 12) for _ in range(3)])
"""


def _draws(study_file, worker: str) -> str:
    out = subprocess.run([sys.executable, "-c", DRAW, str(study_file), worker], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120)
    return out.stdout.strip()


def test_workers_started_by_hand_draw_different_configs(write_study) -> None:
    spec = write_study()  # seed = 1: a launch's workers are reproducible, index by index
    by_hand = [_draws(spec, "hand") for _ in range(3)]
    assert len(set(by_hand)) == 3, by_hand
    assert _draws(spec, "1") == _draws(spec, "1") != _draws(spec, "2")
