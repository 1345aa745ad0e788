"""`hpsearch check` runs everything short of a search, and says what a launch would do."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hpsearch import check as check_api
from hpsearch.cli import cli
from tests.conftest import TINY_STUDY
from tests.user_code import MNIST_NET


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_check_loads_the_data_builds_the_model_takes_a_step_and_estimates_the_time(write_study) -> None:
    result = run("check", write_study())
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "valid." in out and "0.001 .. 0.3 (log)" in out
    assert "Search: 4 trials, sampler RandomSampler(), pruner NopPruner()" in out
    assert "Data digits: 240 training, 60 validation examples; inputs [1, 8, 8], 10 classes; images standardised per channel" in out
    assert "Model mlp: 1,210 parameters; outputs [8, 10] for the first 8 examples fit the task; one forward and backward step: cross-entropy loss" in out
    assert "Engine on cpu: " in out and "Time: " in out and "per trial" in out and "for 4 trials on one worker" in out
    data = json.loads(run("check", write_study(), "--json", "--engine", "train").stdout)
    assert data["direction"] == "maximize" and data["data"]["sizes"] == {"train": 240, "validation": 60, "test": 0}
    assert data["model"]["parameters"] == 1210 and data["engine"] == {"name": "train", "why": "--engine train: one trial at a time"}
    estimate = data["estimate"]
    assert estimate["steps_per_epoch"] == 4 and estimate["seconds_per_step"] > 0
    assert estimate["seconds_per_trial"] == pytest.approx(2 * (4 * estimate["seconds_per_step"] + estimate["seconds_per_evaluation"]))
    assert estimate["seconds_for_study"] == pytest.approx(4 * estimate["seconds_per_trial"])


def test_check_says_why_a_model_cannot_train_in_cohorts(write_study, tmp_path) -> None:
    (tmp_path / "netcheck.py").write_text(MNIST_NET)
    spec = write_study(TINY_STUDY.replace('name = "mlp"\nhidden = 16', 'name = "netcheck:Net"').replace("[train]", '[train]\nloss = "nll"'))
    result = run("check", spec)
    assert result.exit_code == 0, result.output
    assert "Engine on cpu: train (dropout needs per-member random masks)" in result.stdout
    assert "one forward and backward step: nll loss" in result.stdout
    report = check_api(str(spec), engine="cohort")
    assert report.engine.name == "train" and report.engine.why == "dropout needs per-member random masks"


def test_check_shows_a_constructor_error_with_the_users_traceback(write_study, tmp_path) -> None:
    (tmp_path / "badinit.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(64, 10)\n"
        "        self.head = torch.nn.Linear(self.fc.out_feature, 10)\n"
    )
    spec = write_study(TINY_STUDY.replace('name = "mlp"\nhidden = 16', 'name = "badinit:Net"'))
    result = run("check", spec)
    assert result.exit_code == 1 and "Traceback (most recent call last, your code only)" in result.stderr
    assert 'badinit.py", line 6, in __init__' in result.stderr and "self.head = torch.nn.Linear(self.fc.out_feature, 10)" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"Error: {spec}: model.name: badinit:Net raised AttributeError: 'Linear' object has no attribute 'out_feature' (at badinit.py:6 in __init__)"
    assert "cannot train in cohorts" not in result.output


def test_check_builds_the_sampler_and_pruner_with_their_options(write_study) -> None:
    spec = write_study(TINY_STUDY.replace('sampler = "random"', 'sampler = "tpe"\nsampler_options = { n_startup_trial = 3 }'))
    result = run("check", spec, "--quick")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {spec}: search.sampler_options: the tpe sampler takes no option 'n_startup_trial'; remove it (valid options are consider_prior")
    spec = write_study(TINY_STUDY.replace('seed = 1', 'seed = 1\npruner = "median"\npruner_options = { n_startup_trials = 2 }'))
    assert "pruner MedianPruner(n_startup_trials=2)" in run("check", spec, "--quick").stdout


def test_quick_check_loads_no_data(write_study, tmp_path) -> None:
    (tmp_path / "slowdata.py").write_text("def make():\n    raise RuntimeError('would read 50 GB')\n")
    spec = write_study(TINY_STUDY.replace('name = "digits"', 'name = "slowdata:make"'))
    assert run("check", spec, "--quick").exit_code == 0
    full = run("check", spec)
    assert full.exit_code == 1 and f"Error: {spec}: data.name: slowdata:make raised RuntimeError: would read 50 GB (at slowdata.py:2 in make)" in full.stderr


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('name = "mlp"', 'name = "nosuchmodule:make"', "model.name: cannot import module 'nosuchmodule' for 'nosuchmodule:make': No module named 'nosuchmodule'; check the name and that the module is importable from the working directory"),
        ('name = "digits"', 'name = "json:nosuchfunction"', "data.name: module 'json' has no callable 'nosuchfunction', got 'json:nosuchfunction'; check the name after the colon"),
        ('seed = 1', 'seed = 1\nsampler_options = { n_startup_trials = 3 }', "search.sampler_options: the random sampler takes no option 'n_startup_trials'; remove it (it takes no options)"),
        ('seed = 1', 'seed = 1\npruner = "median"\npruner_options = { warmup = 2 }', "search.pruner_options: the median pruner takes no option 'warmup'; remove it (valid options are n_startup_trials, n_warmup_steps, interval_steps, n_min_trials)"),
        ('seed = 1', 'seed = 1\nsampler_options = { seed = 3 }', "search.sampler_options: the random sampler takes no option 'seed'; remove it (it takes no options)"),
        ("lr = { low = 1e-3, high = 0.3, log = true }", "lr = inf", "space.lr: input should be a finite number, got inf"),
        ("batch_size = 64", "batch_size = 0", 'train.batch_size: must be an integer >= 1 or "full", got 0'),
    ],
)
@pytest.mark.parametrize("quick", [True, False])
def test_check_refuses_what_a_launch_would_fail_on(write_study, old, new, message, quick) -> None:
    spec = write_study(TINY_STUDY.replace(old, new, 1))
    result = run("check", spec, *(["--quick"] if quick else []))
    assert result.exit_code == 1 and "valid." not in result.stdout
    assert result.stderr.strip() == f"Error: {spec}: {message}"


def test_check_a_study_with_its_own_loop(write_study, tmp_path) -> None:
    (tmp_path / "checkloop.py").write_text("def run(config, *, device, report):\n    return 0.5\n")
    spec = write_study(
        '[study]\nname = "own"\nmetric = "accuracy"\n[train]\nfunction = "checkloop:run"\n'
        '[space]\noptimizer = "adam"\nlr = { low = 1e-3, high = 0.1 }\n'
    )
    result = run("check", spec)
    assert result.exit_code == 0, result.output
    assert "Own loop checkloop:run: imported" in result.stdout and "Engine on cpu: function" in result.stdout
    assert "Time: not estimated" in result.stdout
