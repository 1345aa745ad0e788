"""The loss is part of the study: every choice means the same in both engines, and a model
output that would broadcast against its targets is an error, never a number."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.config.spec import DataSection, ModelSection
from hpsearch.errors import DataError, ModelError
from hpsearch.training.cohort import train_cohort
from hpsearch.training.contract import check_model
from hpsearch.training.data import load_dataset
from hpsearch.training.losses import Loss, matched, member_losses, resolve_loss, training_loss
from hpsearch.training.models import model_factory
from hpsearch.training.train import train
from tests.conftest import TINY_STUDY
from tests.training.test_cohort import OPTIMIZERS, SCHEDULES, configs

CUSTOM_LOSS = "import torch\ndef pinball(outputs, targets, q=0.7):\n    e = targets - outputs\n    return torch.maximum(q * e, (q - 1) * e).mean()\n"


def linear_data(loss: Loss | None = None):
    data = load_dataset(DataSection(name="linear", options={"size": 300}), "mse")
    return data if loss is None else replace(data, loss=loss)


@pytest.mark.parametrize("name, options", [("mse", {}), ("huber", {"delta": 0.5}), ("smooth-l1", {"beta": 0.2}), ("custom", {"q": 0.3})])
@pytest.mark.parametrize("metric", ["loss", "mse"])
def test_every_regression_loss_is_the_same_in_both_engines_bit_for_bit(name, options, metric, tmp_path) -> None:
    if name == "custom":
        (tmp_path / "pinball.py").write_text(CUSTOM_LOSS)
        name = "pinball:pinball"
    data = linear_data(resolve_loss(name, "regression", options))
    make = model_factory(ModelSection(name="linreg"), data)
    batch = configs(epochs=3, optimizers=OPTIMIZERS[::2], schedules=SCHEDULES[:2])
    for config, member in zip(batch, train_cohort(make, data, batch, metric)):
        reference = train(make, data, config, metric)
        assert [(e.metric, e.train_loss) for e in member.epochs] == [(e.metric, e.train_loss) for e in reference.epochs]


@pytest.mark.parametrize("name", ["cross-entropy", "nll", "mse", "huber", "smooth-l1"])
def test_a_cohorts_loss_gradients_are_each_members_own_bit_for_bit(name) -> None:
    task = "classification" if name in ("cross-entropy", "nll") else "regression"
    loss = resolve_loss(name, task)
    torch.manual_seed(0)
    outputs = torch.randn(4, 16, 5)
    if name == "nll":
        outputs = outputs.log_softmax(-1)
    targets = torch.randint(0, 5, (16,)) if task == "classification" else torch.randn(16, 5)
    stacked = outputs.clone().requires_grad_(True)
    member_losses(stacked, targets, loss, exact=True).sum().backward()
    for k in range(4):
        single = outputs[k].clone().requires_grad_(True)
        training_loss(single, targets, loss).backward()
        assert torch.equal(stacked.grad[k], single.grad)


def test_nll_on_log_probabilities_matches_the_cohort_engine(tmp_path) -> None:
    (tmp_path / "logprob.py").write_text(
        "import torch\n"
        "def make(shape, out):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 24), torch.nn.Tanh(), torch.nn.Linear(24, out), torch.nn.LogSoftmax(dim=1))\n"
    )
    data = load_dataset(DataSection(name="digits", limit=400), "loss")
    data = replace(data, loss=resolve_loss("nll", data.task))
    make = model_factory(ModelSection(name="logprob:make"), data)
    batch = configs(epochs=2, optimizers=OPTIMIZERS[::3], schedules=SCHEDULES[:1])
    for config, member in zip(batch, train_cohort(make, data, batch, "loss")):
        reference = train(make, data, config, "loss")
        for a, b in zip(reference.epochs, member.epochs):  # vmap's batched kernels: close, not bitwise
            assert b.metric == pytest.approx(a.metric, rel=1e-4) and b.train_loss == pytest.approx(a.train_loss, rel=1e-4)


def test_a_regressor_returning_n_against_n_by_1_targets_trains_as_it_should(tmp_path) -> None:
    """The bug this prevents: [N] - [N, 1] broadcasts to [N, N], and the 'mse' is ~200x too big."""
    (tmp_path / "flat.py").write_text(
        "import torch\n"
        "def make(shape, out):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 1), torch.nn.Flatten(0))\n"
    )
    data = linear_data()
    config = configs(epochs=10, optimizers=[{"name": "sgd", "lr": 0.1, "weight_decay": 0.0}], schedules=SCHEDULES[:1])[0]
    flat = train(model_factory(ModelSection(name="flat:make"), data), data, config, "mse")
    column = train(model_factory(ModelSection(name="linreg"), data), data, config, "mse")
    assert [e.metric for e in flat.epochs] == [e.metric for e in column.epochs]
    assert flat.metric < 0.05  # the noise variance is 0.01; the broadcast bug gives ~200
    member = train_cohort(model_factory(ModelSection(name="flat:make"), data), data, [config], "mse")[0]
    assert [e.metric for e in member.epochs] == [e.metric for e in column.epochs]


@pytest.mark.parametrize(
    "outputs, targets, message",
    [
        ((8, 3), (8, 1), "outputs of shape [8, 3] for targets of shape [8, 1]; they would broadcast to [8, 3], which is an error, not a loss; return [N, 1] or [N]"),
        ((8,), (8, 2), "outputs of shape [8] for targets of shape [8, 2], which is an error, not a loss; return [N, 2]"),
        ((1, 8), (8, 1), "outputs of shape [1, 8] for targets of shape [8, 1]; they would broadcast to [8, 8]"),
        ((8, 1, 1), (8, 1), "outputs of shape [8, 1, 1] for targets of shape [8, 1]; they would broadcast to [8, 8, 1]"),
    ],
)
def test_regression_outputs_that_would_broadcast_are_errors(outputs, targets, message) -> None:
    with pytest.raises(ModelError) as caught:
        matched(torch.zeros(outputs), torch.zeros(targets), "regression")
    assert message in str(caught.value)
    assert matched(torch.zeros(8), torch.zeros(8, 1), "regression").shape == (8, 1)


def test_a_broadcasting_regressor_is_refused_by_check_and_by_launch(write_study, tmp_path) -> None:
    (tmp_path / "wide.py").write_text(
        "import torch\n"
        "def make(shape, out):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 3))\n"
    )
    spec = write_study(TINY_STUDY.replace('name = "mlp"\nhidden = 16', 'name = "wide:make"').replace('name = "digits"', 'name = "linear"').replace("[study]", '[study]\nmetric = "mse"'))
    expected = "model.name: wide:make: the model returns outputs of shape [8, 3] for targets of shape [8, 1]"
    for command in (["check", spec], ["launch", spec]):
        result = CliRunner().invoke(cli, [str(c) for c in command])
        line = result.stderr.strip()
        assert result.exit_code == 1 and line.startswith("Error: ") and expected in line, result.output
        assert len(line.splitlines()) == 1
    assert not (tmp_path / "hpsearch.db").exists()


def test_nll_needs_log_probabilities_and_classification_needs_scores() -> None:
    data = load_dataset(DataSection(name="digits", limit=100), "accuracy")
    with pytest.raises(ModelError, match=r"train.loss: nll takes log-probabilities, but the outputs of mlp are not .*end the model with log_softmax"):
        check_model(model_factory(ModelSection(name="mlp"), data), replace(data, loss=resolve_loss("nll", "classification")), "mlp")
    with pytest.raises(ModelError, match=r"a classifier must return one score per class, \[N, C\] \(here \[8, C\]\)"):
        matched(torch.zeros(8), torch.zeros(8, dtype=torch.long), "classification")


def test_the_loss_must_fit_the_task() -> None:
    with pytest.raises(DataError, match=r"train.loss: nll needs class labels, but data linear has floating-point targets; use mse or huber or smooth-l1"):
        resolve_loss("nll", "regression", data="data linear")
    assert resolve_loss(None, "classification").name == "cross-entropy" and resolve_loss(None, "regression").name == "mse"


def test_classification_losses_with_options_are_the_same_in_both_engines(tmp_path) -> None:
    (tmp_path / "focal.py").write_text(
        "import torch.nn.functional as F\n"
        "def focal(outputs, targets, gamma=2.0):\n"
        "    logp = F.log_softmax(outputs, dim=1).gather(1, targets[:, None]).squeeze(1)\n"
        "    return (-(1 - logp.exp()) ** gamma * logp).mean()\n"
    )
    data = load_dataset(DataSection(name="digits", limit=300), "loss")
    make = model_factory(ModelSection(name="mlp"), data)
    batch = configs(epochs=2, optimizers=OPTIMIZERS[::3], schedules=SCHEDULES[:1])
    for name, options in (("cross-entropy", {"label_smoothing": 0.1}), ("focal:focal", {"gamma": 1.5})):
        chosen = replace(data, loss=resolve_loss(name, "classification", options))
        for metric in ("loss", "accuracy"):
            for config, member in zip(batch, train_cohort(make, chosen, batch, metric)):
                reference = train(make, chosen, config, metric)
                assert [(e.metric, e.train_loss) for e in member.epochs] == [(e.metric, e.train_loss) for e in reference.epochs]
    smoothed = train(make, replace(data, loss=resolve_loss("cross-entropy", "classification", {"label_smoothing": 0.1})), batch[0], "loss")
    assert smoothed.metric != train(make, data, batch[0], "loss").metric  # the option reaches the loss
