"""Reproducible anywhere: a bundle and hpsearch's public functions re-create a trial exactly.

The study trains pytorch/examples' MNIST network (conv, dropout, log_softmax; loss nll) on a
user's data factory with a limit, a validation and a test fraction and standardised images.
Another project, in another directory and another process, without Optuna, with a DataLoader,
re-trains the best trial from the bundle and gets its per-epoch metric bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import optuna
from click.testing import CliRunner

from hpsearch.cli import cli
from tests.user_code import IMAGES, MNIST_NET

STUDY = """
[study]
name = "mnistnet"

[model]
name = "mnistnet:Net"

[data]
name = "images:make"
limit = 400
validation_fraction = 0.25
test_fraction = 0.1
split_seed = 11

[train]
epochs = 3
seed = 5
loss = "nll"

[search]
n_trials = 2
sampler = "random"
seed = 2

[space]
optimizer = ["momentum", "adam"]
lr = { low = 1e-3, high = 3e-2, log = true }
batch_size = [32, 48]
schedule = ["constant", "step"]
"""

ELSEWHERE = """
import json, sys
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import hpsearch
from images import make
from mnistnet import Net

bundle = hpsearch.read_bundle("best.json")
entry, recipe = bundle["configs"][0], bundle["training"]
config, data = entry["config"], recipe["data"]

x, y = make(**data["options"])
split = hpsearch.split_indices(len(x), data["validation_fraction"], data["test_fraction"], data["limit"], data["split_seed"])
x = x.float()
if data["standardize"]:
    x = hpsearch.standardize(x, split.train)
x_train, y_train, x_val, y_val = x[split.train], y[split.train], x[split.validation], y[split.validation]

hpsearch.seed_trial(config)
model = Net()
optimizer, scheduler = hpsearch.build_optimizer(model.parameters(), config)
batches = hpsearch.BatchOrder(len(x_train), config["batch_size"], config["data_seed"])
loader = DataLoader(TensorDataset(x_train, y_train), batch_sampler=batches, generator=torch.Generator())
curve, total = [], 0.0
for epoch in range(config["epochs"]):
    model.train()
    for inputs, targets in loader:
        loss = F.nll_loss(model(inputs), targets)
        total += float(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    scheduler.step()
    curve.append(hpsearch.evaluate(model, x_val, y_val, bundle["metric"]))
print(json.dumps({"curve": curve, "total": total, "loss": recipe["loss"], "optuna": "optuna" in sys.modules}))
"""


def test_another_project_reproduces_a_trial_exactly_with_a_dataloader(tmp_path) -> None:
    (tmp_path / "mnistnet.py").write_text(MNIST_NET)
    (tmp_path / "images.py").write_text(IMAGES)
    (tmp_path / "study.toml").write_text(STUDY)
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    result = CliRunner().invoke(cli, ["launch", "study.toml", "--storage", url, "--json"])
    assert result.exit_code == 0, result.output
    assert "dropout needs per-member random masks" in result.stderr  # trains one trial at a time
    assert CliRunner().invoke(cli, ["export", "mnistnet", "--storage", url, "-o", "best.json"]).exit_code == 0

    bundle = json.loads((tmp_path / "best.json").read_text())
    data = bundle["training"]["data"]
    assert (data["limit"], data["validation_fraction"], data["test_fraction"], data["split_seed"], data["standardize"]) == (400, 0.25, 0.1, 11, True)
    assert bundle["training"]["loss"] == "nll" and bundle["configs"][0]["engine"] == "train"
    assert bundle["configs"][0]["precision"] == "fp32" and bundle["provenance"]["trained_with"]

    best = optuna.load_study(study_name="mnistnet", storage=url).trials[bundle["configs"][0]["trial"]]
    searched = [best.intermediate_values[e] for e in sorted(best.intermediate_values)]
    assert bundle["configs"][0]["epochs"] == searched

    project = tmp_path / "elsewhere"
    project.mkdir()
    for name in ("mnistnet.py", "images.py", "best.json"):
        (project / name).write_text((tmp_path / name).read_text())
    (project / "train.py").write_text(textwrap.dedent(ELSEWHERE))
    out = subprocess.run([sys.executable, "train.py"], cwd=project, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    reproduced = json.loads(out.stdout.strip().splitlines()[-1])
    assert reproduced["optuna"] is False and reproduced["loss"] == "nll"
    assert reproduced["curve"] == searched  # bit for bit, every epoch

    # Without its own generator the DataLoader draws from torch's, and dropout's masks move.
    (project / "train.py").write_text(textwrap.dedent(ELSEWHERE).replace(", generator=torch.Generator())", ")"))
    out = subprocess.run([sys.executable, "train.py"], cwd=project, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["total"] != reproduced["total"]
