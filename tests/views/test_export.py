"""Export bundles, read them back in another project, and warm-start a study with them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner

from hpsearch import load_config
from hpsearch.cli import cli
from hpsearch.errors import ConfigError
from tests.conftest import TINY_STUDY


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def finished(write_study, sqlite_url):
    spec = write_study(TINY_STUDY.replace("n_trials = 4", "n_trials = 6"))
    assert run("launch", spec, "--storage", sqlite_url).exit_code == 0
    return spec, sqlite_url


@pytest.mark.parametrize("fmt", ["json", "yaml", "toml"])
def test_export_writes_the_top_configs_with_provenance(finished, fmt, tmp_path) -> None:
    spec, url = finished
    out = tmp_path / f"best.{fmt}"
    result = run("export", "tiny", "--storage", url, "--top", "3", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    bundle = {"json": json.loads, "yaml": yaml.safe_load, "toml": __import__("tomllib").loads}[fmt](text)
    assert bundle["format"] == "hpsearch-config-bundle" and bundle["version"] == 1
    study = optuna.load_study(study_name="tiny", storage=url)
    ranked = sorted(study.trials, key=lambda t: t.value, reverse=True)[:3]
    assert [c["trial"] for c in bundle["configs"]] == [t.number for t in ranked]
    assert [c["value"] for c in bundle["configs"]] == [t.value for t in ranked]
    assert [c["config"] for c in bundle["configs"]] == [t.user_attrs["config"] for t in ranked]
    provenance = bundle["provenance"]
    assert provenance["storage"] == url and provenance["trials"] == [t.number for t in ranked]
    assert provenance["study_file_sha256"] == hashlib.sha256(Path(spec).read_bytes()).hexdigest()
    assert provenance["torch"] and provenance["optuna"] == optuna.__version__ and provenance["exported_at"]
    for rank in range(3):
        assert load_config(out, rank=rank) == ranked[rank].user_attrs["config"]


def test_export_to_standard_output_and_errors(finished, write_study, sqlite_url) -> None:
    spec, url = finished
    result = run("export", "tiny", "--storage", url)
    assert result.exit_code == 0 and json.loads(result.stdout)["configs"][0]["rank"] == 0
    missing = run("export", "nope", "--storage", url)
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: no study 'nope' in")


def test_load_config_errors(tmp_path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not an hpsearch config bundle"):
        load_config(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_config(tmp_path / "bad.json")
    config = {"optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "constant"}}
    (tmp_path / "one.json").write_text(json.dumps(config))
    assert load_config(tmp_path / "one.json") == config  # a lone trial config reads too
    with pytest.raises(ConfigError, match=r"rank 1 is out of range; the bundle holds 1 configs \(0..0\)"):
        load_config(tmp_path / "one.json", rank=1)


def test_another_project_trains_with_a_bundle_in_two_lines(finished, tmp_path) -> None:
    _, url = finished
    project = tmp_path / "elsewhere"
    project.mkdir()
    assert run("export", "tiny", "--storage", url, "-o", project / "best.yaml").exit_code == 0
    (project / "train.py").write_text(textwrap.dedent("""
        import sys
        import torch
        from hpsearch import build_optimizer, load_config

        config = load_config("best.yaml")
        model = torch.nn.Linear(3, 1)
        optimizer, scheduler = build_optimizer(model.parameters(), config)
        x = torch.randn(256, 3)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        first = None
        for epoch in range(max(20, config["epochs"])):
            for i in range(0, 256, 32):
                loss = torch.nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
                optimizer.zero_grad(); loss.backward(); optimizer.step()
                first = float(loss) if first is None else first
            scheduler.step()
        print(type(optimizer).__name__, type(scheduler).__name__, first > float(loss), "optuna" in sys.modules)
    """))
    out = subprocess.run([sys.executable, "train.py"], cwd=project, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    name, scheduler, learned, optuna_loaded = out.stdout.split()
    assert name in ("SGD", "Adam") and scheduler == "ConstantLR" and optuna_loaded == "False"


def test_warm_start_runs_the_bundle_first(finished, write_study, tmp_path) -> None:
    _, url = finished
    assert run("export", "tiny", "--storage", url, "--top", "2", "-o", tmp_path / "best.json").exit_code == 0
    bundle = json.loads((tmp_path / "best.json").read_text())
    other = f"sqlite:///{tmp_path / 'other.db'}"
    spec = write_study(TINY_STUDY.replace('name = "tiny"', 'name = "second"'), name="second.toml")
    result = run("launch", spec, "--storage", other, "--enqueue", tmp_path / "best.json")
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="second", storage=other).trials
    for trial, entry in zip(trials[:2], bundle["configs"]):
        expected = {k: v for k, v in entry["config"].items() if k != "seed"}
        assert {k: v for k, v in trial.user_attrs["config"].items() if k != "seed"} == expected
        assert trial.user_attrs["warm_start"].endswith(f"best.json#{entry['rank']}")
    assert "warm_start" not in trials[2].user_attrs and len(trials) == 4


def test_a_config_outside_the_space_is_refused_before_anything_is_written(finished, write_study, tmp_path) -> None:
    _, url = finished
    run("export", "tiny", "--storage", url, "-o", tmp_path / "best.json")
    narrow = write_study(TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["momentum"]'), name="narrow.toml")
    other = tmp_path / "fresh.db"
    result = run("launch", narrow, "--storage", f"sqlite:///{other}", "--enqueue", tmp_path / "best.json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert line.startswith(f"Error: {tmp_path / 'best.json'}: configs[0].optimizer.name: ") and "is not among space.optimizer (one of momentum)" in line
    assert not other.exists()
    bundle = json.loads((tmp_path / "best.json").read_text())
    bundle["configs"][0]["config"]["optimizer"]["lr"] = 7.0
    (tmp_path / "wild.json").write_text(json.dumps(bundle))
    result = run("launch", write_study(), "--storage", f"sqlite:///{other}", "--enqueue", tmp_path / "wild.json")
    assert result.stderr.strip() == f"Error: {tmp_path / 'wild.json'}: configs[0].optimizer.lr: 7.0 is outside space.lr (0.001 .. 0.3 (log))"
    assert not other.exists()
