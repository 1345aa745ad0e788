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


def test_a_bundle_that_is_not_utf8_is_one_line(write_study, sqlite_url, tmp_path) -> None:
    from click.testing import CliRunner

    from hpsearch.cli import cli

    bundle = tmp_path / "best.json"
    bundle.write_bytes(b'\xff\xfe{"configs": []}')
    result = CliRunner().invoke(cli, ["launch", str(write_study()), "--storage", sqlite_url, "--enqueue", str(bundle)])
    assert result.exit_code == 1 and result.stderr.strip() == f"Error: {bundle}: not UTF-8 text (byte 0: b'\\xff'); save the file as UTF-8"


def test_output_into_a_missing_folder_is_refused_before_any_work(write_study, sqlite_url, tmp_path) -> None:
    from click.testing import CliRunner

    from hpsearch.cli import cli
    from tests.db.test_storage import run_tiny

    run_tiny(write_study, sqlite_url)
    for command, name in (["export", "tiny"], "x.json"), (["report", "tiny"], "x.html"):
        target = tmp_path / "missing" / name
        result = CliRunner().invoke(cli, [*command, "--storage", sqlite_url, "-o", str(target)])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip() == f"Error: -o {target}: folder {target.parent} does not exist; create it first or write elsewhere"
