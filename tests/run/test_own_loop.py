"""Bring your own training loop: hpsearch samples, stores, prunes and exports; the loop trains."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.errors import HpsearchError
from hpsearch.training.own_loop import Pruned, train_own
from hpsearch.training.results import Diverged, Interrupted

# A loop as people write them: its own data and model, label smoothing, augmentation by
# noise, gradient clipping, a DataLoader, and the optimizer and schedule from the trial config.
LOOP = '''
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import hpsearch

SEEN = []

def run(config, *, device, report, width=16):
    SEEN.append((config["seed"], str(device)))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    x_val, y_val = x[256:], y[256:]
    model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 2)).to(device)
    optimizer, scheduler = hpsearch.build_optimizer(model.parameters(), config)
    assert type(optimizer).__name__ == {"sgd": "SGD", "momentum": "SGD", "adam": "Adam"}[config["optimizer"]["name"]]
    loader = DataLoader(TensorDataset(x[:256], y[:256]), batch_size=config["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(config["seed"]))
    accuracy = 0.0
    for epoch in range(config["epochs"]):
        model.train()
        for inputs, targets in loader:
            inputs = inputs + 0.05 * torch.randn_like(inputs)
            loss = F.cross_entropy(model(inputs), targets, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        report(epoch, accuracy)
    return accuracy

def wrong(config):
    return 1.0

def text(config, *, device, report):
    return "great"
'''

STUDY = """
[study]
name = "own"
metric = "accuracy"

[train]
epochs = 4
batch_size = 32
function = "myloop:run"
options = {{ width = 8 }}

[search]
n_trials = {n_trials}
sampler = "random"
seed = 0
{search}

[space]
optimizer = ["sgd", "adam"]
lr = {{ low = 1e-4, high = 0.3, log = true }}
"""


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def loop(tmp_path):
    (tmp_path / "myloop.py").write_text(LOOP)
    return tmp_path


def test_a_study_trains_with_its_own_loop_and_hpsearch_does_the_rest(loop, write_study, sqlite_url) -> None:
    spec = write_study(STUDY.format(n_trials=6, search=""))
    result = run("launch", spec, "--storage", sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == {"COMPLETE": 6}
    trials = optuna.load_study(study_name="own", storage=sqlite_url).trials
    import myloop

    assert [seed for seed, _ in myloop.SEEN] == [t.user_attrs["config"]["seed"] for t in trials]  # one at a time, in order
    for t in trials:
        assert t.user_attrs["engine"] == "function" and t.user_attrs["cohort_size"] == 1
        assert sorted(t.intermediate_values) == [0, 1, 2, 3] and t.value == t.intermediate_values[3]
    assert max(t.value for t in trials) > 0.9
    bundle = json.loads(run("export", "own", "--storage", sqlite_url).stdout)
    assert bundle["training"]["function"] == "myloop:run" and bundle["training"]["options"] == {"width": 8}
    assert bundle["configs"][0]["config"] == max(trials, key=lambda t: t.value).user_attrs["config"]


def test_the_pruner_stops_an_own_loop_at_its_report(loop, write_study, sqlite_url) -> None:
    search = 'pruner = "median"\npruner_options = { n_startup_trials = 2, n_warmup_steps = 0 }'
    spec = write_study(STUDY.format(n_trials=12, search=search))
    result = run("launch", spec, "--storage", sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    pruned = [t for t in optuna.load_study(study_name="own", storage=sqlite_url).trials if t.state.name == "PRUNED"]
    assert pruned and all(len(t.intermediate_values) < 4 for t in pruned)


def test_an_own_loop_that_breaks_the_contract_is_refused_or_fails_with_the_reason(loop, write_study, sqlite_url) -> None:
    wrong = write_study(STUDY.format(n_trials=2, search="").replace("myloop:run", "myloop:wrong").replace("options = { width = 8 }", ""))
    result = run("launch", wrong, "--storage", sqlite_url)
    assert result.exit_code == 1 and result.stderr.startswith("Error: train.function: myloop:wrong must take (config, *, device, report): ")
    cohorts = run("launch", write_study(STUDY.format(n_trials=2, search="")), "--storage", sqlite_url, "--engine", "cohort")
    assert cohorts.stderr.strip() == "Error: --engine cohort: study own trains with its own loop (myloop:run), one trial at a time; drop --engine"
    text = write_study(STUDY.format(n_trials=1, search="").replace("myloop:run", "myloop:text").replace("options = { width = 8 }", ""))
    assert run("launch", text, "--storage", sqlite_url).exit_code == 1
    trials = optuna.load_study(study_name="own", storage=sqlite_url).trials
    assert [t.state.name for t in trials] == ["FAIL"] * 5  # five failures in a row stop the worker
    assert {t.user_attrs["error"] for t in trials} == {"train.function's return value must be a number, got str 'great'"}


def test_the_loop_contract_on_its_own() -> None:
    config = {"seed": 3, "epochs": 3}

    def curve(config, *, device, report):
        for epoch, value in enumerate([0.5, 0.6, 0.7]):
            report(epoch, value)

    result = train_own(curve, config, torch.device("cpu"))
    assert [e.metric for e in result.epochs] == [0.5, 0.6, 0.7] and result.metric == 0.7 and not result.pruned
    stopped = train_own(curve, config, torch.device("cpu"), on_epoch=lambda record: record.epoch < 1)
    assert stopped.pruned and len(stopped.epochs) == 2

    def swallows(config, *, device, report):
        for epoch in range(3):
            try:
                report(epoch, 0.5)
            except Pruned:
                pass
        return 0.5

    assert train_own(swallows, config, torch.device("cpu"), on_epoch=lambda record: False).pruned  # the verdict stands
    with pytest.raises(Interrupted):
        train_own(swallows, config, torch.device("cpu"), should_stop=lambda: True)

    def seeded(config, *, device, report):
        return torch.rand(()).item()

    assert train_own(seeded, config, torch.device("cpu")).metric == train_own(seeded, config, torch.device("cpu")).metric

    def nan(config, *, device, report):
        report(0, math.nan)

    with pytest.raises(Diverged, match="reported value became nan in epoch 0"):
        train_own(nan, config, torch.device("cpu"))

    def backwards(config, *, device, report):
        report(1, 0.1)
        report(0, 0.2)

    with pytest.raises(HpsearchError, match="epochs must increase, got 0 after 1"):
        train_own(backwards, config, torch.device("cpu"))
