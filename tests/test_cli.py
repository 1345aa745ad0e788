"""The hpsearch command end to end on temporary SQLite files, errors included."""

from __future__ import annotations

import json
from pathlib import Path

import click
import optuna
import pytest
from click.testing import CliRunner, Result

from hpsearch.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_launch_runs_the_study_and_prints_the_best_config(write_study, sqlite_url) -> None:
    result = run("launch", write_study(), "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "Study tiny: 4/4 trials finished (4 complete, 0 pruned, 0 failed)" in result.stdout
    assert "Best accuracy = " in result.stdout
    best = json.loads(result.stdout.split("its config:\n", 1)[1].rsplit("\nStorage:", 1)[0])
    assert best["optimizer"]["name"] in ("sgd", "adam") and best["epochs"] == 2
    assert "[4/4] best accuracy=" in result.stderr  # the progress lines (not a terminal)
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    for trial in study.trials:
        assert trial.user_attrs["config"]["seed"] != study.trials[0].user_attrs["config"]["seed"] or trial.number == 0
        assert set(trial.user_attrs) >= {"config", "device", "host", "engine", "train_seconds", "cohort_size"}
        assert len(trial.intermediate_values) == 2


def test_launching_again_resumes_to_the_total(write_study, sqlite_url) -> None:
    spec = write_study()
    assert run("launch", spec, "--storage", sqlite_url).exit_code == 0
    result = run("launch", spec, "--storage", sqlite_url, "--n-trials", "6", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"COMPLETE": 6} and summary["outcome"] == "finished"
    again = json.loads(run("launch", spec, "--storage", sqlite_url, "--n-trials", "6", "--json").stdout)
    assert again["counts"] == {"COMPLETE": 6}  # nothing left to do
    # a resumed launch samples new configs instead of repeating the first launch's
    params = [t.params for t in optuna.load_study(study_name="tiny", storage=sqlite_url).trials]
    assert params[4] not in params[:4]


def test_a_changed_study_file_is_refused_under_the_same_name(write_study, sqlite_url) -> None:
    assert run("launch", write_study(), "--storage", sqlite_url).exit_code == 0
    changed = write_study(name="changed.toml", **{"epochs = 2": "epochs = 3"})
    line = one_line_error(run("launch", changed, "--storage", sqlite_url))
    assert "study.name: study 'tiny' in sqlite:///" in line and "was created from a different study file" in line


def test_read_commands(write_study, sqlite_url) -> None:
    assert run("launch", write_study(), "--storage", sqlite_url).exit_code == 0
    studies = json.loads(run("studies", "--storage", sqlite_url, "--json").stdout)
    assert [(s["study"], s["complete"], s["metric"]) for s in studies] == [("tiny", 4, "accuracy")]
    trials = json.loads(run("trials", "tiny", "--storage", sqlite_url, "--json").stdout)
    assert [t["number"] for t in trials] == [0, 1, 2, 3] and all(t["config"] for t in trials)
    best = json.loads(run("best", "tiny", "--storage", sqlite_url, "--json").stdout)
    assert best["value"] == max(t["value"] for t in trials)
    assert best["config"] == trials[best["number"]]["config"]
    table = run("trials", "tiny", "--storage", sqlite_url)
    assert table.exit_code == 0 and "COMPLETE" in table.stdout
    assert "Best accuracy = " in run("best", "tiny", "--storage", sqlite_url).stdout
    assert "tiny" in run("studies", "--storage", sqlite_url).stdout


def test_storage_from_the_environment(write_study, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HPSEARCH_STORAGE", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert run("launch", write_study()).exit_code == 0
    assert json.loads(run("studies", "--json").stdout)[0]["study"] == "tiny"
    assert (tmp_path / "elsewhere.db").exists() and not Path("hpsearch.db").exists()


def test_default_storage_is_sqlite_in_the_working_directory(write_study) -> None:
    assert run("launch", write_study()).exit_code == 0
    assert Path("hpsearch.db").exists()


def test_check_prints_the_resolved_space(write_study) -> None:
    result = run("check", write_study())
    assert result.exit_code == 0
    assert "valid." in result.stdout and "lr" in result.stdout and "0.001 .. 0.3 (log)" in result.stdout
    data = json.loads(run("check", write_study(), "--json").stdout)
    assert data["direction"] == "maximize"
    assert {r["key"] for r in data["space"]} >= {"optimizer", "lr", "beta1", "eps", "weight_decay"}


def test_env_masks_the_storage_password() -> None:
    result = run("env", "--storage", "postgresql://me:s3cret@127.0.0.1:1/none", "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["storage"] == "postgresql+psycopg://me:***@127.0.0.1:1/none"
    assert "s3cret" not in result.output and info["versions"]["torch"] and "cpu" in info["devices"]


def test_diverging_trials_are_pruned_with_the_reason_and_the_search_goes_on(write_study, sqlite_url) -> None:
    spec = write_study(**{
        'name = "mlp"\nhidden = 16': 'name = "linreg"', 'name = "digits"': 'name = "linear"',
        'optimizer = ["sgd", "adam"]': 'optimizer = "sgd"', "low = 1e-3, high = 0.3": "low = 10, high = 100", "epochs = 2": "epochs = 20",
    })
    result = run("launch", spec, "--storage", sqlite_url, "--json")
    assert result.exit_code == 0
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert len(study.trials) == 4
    assert all(t.state.name == "PRUNED" and t.user_attrs["diverged"].startswith("training loss became") for t in study.trials)


def test_trials_that_raise_fail_and_a_study_that_only_fails_stops(write_study, sqlite_url, tmp_path) -> None:
    # The model passes the check before launch (one step) and fails from its second step on.
    (tmp_path / "badmodel.py").write_text(
        "import torch\n"
        "class Bad(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.w = torch.nn.Linear(64, 10); self.calls = 0\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls > 1:\n"
        "            raise RuntimeError('boom in forward')\n"
        "        return self.w(x.flatten(1))\n"
        "def make(shape, out):\n"
        "    return Bad()\n"
    )
    spec = write_study(**{'name = "mlp"\nhidden = 16': 'name = "badmodel:make"', "n_trials = 4": "n_trials = 20"})
    result = run("launch", spec, "--storage", sqlite_url, "--engine", "train")
    assert result.exit_code == 1
    assert "trials kept failing; the last error: RuntimeError: boom in forward" in result.stdout
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert [t.state.name for t in study.trials] == ["FAIL"] * 5
    assert study.trials[0].user_attrs["error"] == "RuntimeError: boom in forward"


def test_a_model_that_cannot_take_a_step_stops_the_launch_before_anything_is_written(write_study, tmp_path) -> None:
    (tmp_path / "brokenmodel.py").write_text(
        "import torch\n"
        "class Bad(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.w = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('boom in forward')\n"
    )
    spec = write_study(**{'name = "mlp"\nhidden = 16': 'name = "brokenmodel:Bad"'})
    line = one_line_error(run("launch", spec))
    assert line == (
        f"Error: {spec}: model.name: brokenmodel:Bad: its forward on a batch of shape [8, 1, 8, 8] raised "
        "RuntimeError: boom in forward (at brokenmodel.py:6 in forward)"
    )
    assert not Path("hpsearch.db").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["launch", "nope.toml"], "Error: nope.toml: no such study file; check the path (studies/*.toml)"),
        (["launch", "{study}", "--storage", "nonsense"], "Error: storage: 'nonsense' is not a database URL; use e.g. sqlite:///hpsearch.db or postgresql+psycopg://user:password@host/db"),
        (["launch", "{study}", "--device", "cuda"], "Error: --device cuda: no CUDA device is visible (torch.cuda.is_available() is False); use --device cpu"),
        (["launch", "{study}", "--device", "tpu9"], "Error: --device: unknown device 'tpu9'; use cpu, cuda or cuda:N"),
        (["launch", "{study}", "--gpus", "0,1"], "Error: --gpus 0,1: this machine has no GPU"),
        (["studies", "--storage", "sqlite:///missing.db"], "Error: storage sqlite:///missing.db: no such database file; run `hpsearch launch STUDY_FILE` first, or pass --storage / set HPSEARCH_STORAGE"),
        (["trials", "nope", "--storage", "postgresql://u:pw@127.0.0.1:1/x"], "Error: storage postgresql+psycopg://u:***@127.0.0.1:1/x: cannot use the database: connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection refused"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_exit(args, expected, write_study) -> None:
    study = str(write_study())
    result = run(*[a.replace("{study}", study) for a in args])
    line = one_line_error(result)
    assert line.split("\n")[0].startswith(expected.split(" failed:")[0]) if "connection" in expected else line == expected


def test_a_bad_study_file_is_one_line(write_study) -> None:
    spec = write_study(**{"low = 1e-3, high = 0.3": "low = 0.1, high = 0.001"})
    line = one_line_error(run("launch", spec))
    assert line == f"Error: {spec}: space.lr: low must be < high, got low=0.1 high=0.001"
    assert not Path("hpsearch.db").exists()  # nothing written for bad input


def test_unknown_study_lists_the_known_ones(write_study, sqlite_url) -> None:
    run("launch", write_study(), "--storage", sqlite_url)
    line = one_line_error(run("best", "tinny", "--storage", sqlite_url))
    assert line == f"Error: no study 'tinny' in {sqlite_url}; studies there: tiny"


def test_missing_dataset_files_name_them(write_study, tmp_path) -> None:
    spec = write_study(**{'name = "digits"': f'name = "mnist"\ndir = "{tmp_path}/none"'})
    line = one_line_error(run("launch", spec))
    assert "data: mnist needs train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz in" in line


def test_usage_errors_are_one_line() -> None:
    line = one_line_error(run("launch", "x.toml", "--n-trails", "3"), code=2)
    assert "No such option" in line and "--n-trails" in line and line.endswith("launch --help')")
    one_line_error(run("launch", "x.toml", "--cohort", "zero"), code=2)


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((prefix + (name,), command))
        if isinstance(command, click.Group):
            found += walk(command, prefix + (name,))
    return found


@pytest.mark.parametrize("path, command", walk(cli), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help(path, command) -> None:
    assert command.help and len(command.help.strip()) > 20
    result = run(*path, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


@pytest.mark.parametrize("study, files", [("mnist_softmax", "mnist"), ("mnist_mlp", "mnist"), ("cifar10_cnn", "cifar10")])
def test_the_shipped_file_based_studies_run_on_small_files(study, files, tmp_path, sqlite_url) -> None:
    import pickle

    from tests.conftest import ROOT
    from tests.training.test_data import cifar_batches, write_mnist

    data = tmp_path / "datasets"
    if files == "mnist":
        write_mnist(data / "mnist", n=60)
    else:
        folder = data / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name, batch in cifar_batches(n=6).items():
            (folder / name).write_bytes(pickle.dumps(batch))
    result = run("launch", ROOT / "studies" / f"{study}.toml", "--storage", sqlite_url, "--data-dir", data, "--n-trials", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "finished" and summary["best_config"] is not None


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp", "qmc", "grid"])
def test_every_sampler_runs_a_study(sampler, write_study, sqlite_url) -> None:
    spec = write_study(**{"lr = { low = 1e-3, high = 0.3, log = true }": "lr = [0.003, 0.03, 0.3]", "n_trials = 4": "n_trials = 5"})
    result = run("launch", spec, "--storage", sqlite_url, "--sampler", sampler, "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == {"COMPLETE": 5}


@pytest.mark.parametrize("pruner", ["median", "successive-halving", "hyperband"])
def test_every_pruner_prunes_on_the_epoch_budget(pruner, write_study, sqlite_url) -> None:
    spec = write_study(**{
        "epochs = 2": "epochs = 6", "n_trials = 4": f'n_trials = 24\npruner = "{pruner}"',
        "low = 1e-3, high = 0.3": "low = 1e-5, high = 1.0", "limit = 300": "limit = 200",
    })
    # Cohorts of 4: the median rule compares with finished trials, so some must finish first.
    result = run("launch", spec, "--storage", sqlite_url, "--cohort", "4", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 24 and counts.get("PRUNED", 0) > 0
    pruned = [t for t in optuna.load_study(study_name="tiny", storage=sqlite_url).trials if t.state.name == "PRUNED"]
    assert all(len(t.intermediate_values) < 6 for t in pruned)


def test_a_timeout_stops_the_launch(write_study, sqlite_url) -> None:
    spec = write_study(**{"n_trials = 4": "n_trials = 400"})
    result = run("launch", spec, "--storage", sqlite_url, "--timeout", "3", "--engine", "train", "--json")
    assert result.exit_code == 1, result.output  # short of its total
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "timeout" and 0 < summary["counts"]["COMPLETE"] < 400
