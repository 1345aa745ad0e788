"""The reference engine: it learns, it stops on divergence, it obeys the pruner."""

from __future__ import annotations

import pytest

from hpsearch.config.spec import DataSection, ModelSection
from hpsearch.training.data import load_dataset
from hpsearch.training.models import model_factory
from hpsearch.training.results import Diverged, Interrupted
from hpsearch.training.train import train


def config(**optimizer: object) -> dict:
    return {
        "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, **optimizer},
        "schedule": {"name": "cosine", "T_max": 3, "eta_min": 0.0, "warmup_epochs": 0},
        "batch_size": 32,
        "epochs": 3,
        "seed": 7,
        "data_seed": 0,
    }


@pytest.fixture(scope="module")
def digits():
    data = load_dataset(DataSection(name="digits"), "accuracy")
    return data, model_factory(ModelSection(name="mlp"), data)


def test_a_short_run_on_the_bundled_data_beats_chance_by_far(digits) -> None:
    data, make = digits
    result = train(make, data, config(), "accuracy")
    assert [e.epoch for e in result.epochs] == [0, 1, 2]
    assert result.metric > 0.9  # chance is 0.1
    assert result.epochs[0].lr == 0.01 and result.epochs[2].lr < 0.01  # the schedule stepped
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss


def test_same_config_same_numbers(digits) -> None:
    data, make = digits
    a = train(make, data, config(), "accuracy")
    b = train(make, data, config(), "accuracy")
    assert [e.metric for e in a.epochs] == [e.metric for e in b.epochs]
    c = train(make, data, dict(config(), seed=8), "accuracy")
    assert [e.train_loss for e in c.epochs] != [e.train_loss for e in a.epochs]


def test_divergence_is_reported_not_trained_through(digits) -> None:
    data, make = digits
    exploding = config() | {"optimizer": {"name": "sgd", "lr": 1e4, "weight_decay": 0.0}}
    with pytest.raises(Diverged) as caught:
        train(make, data, exploding, "accuracy")
    assert caught.value.reason in {f"training loss became {bad} in epoch {e}" for bad in ("nan", "inf") for e in range(3)}
    assert len(caught.value.epochs) < 3


def test_on_epoch_can_stop_a_trial(digits) -> None:
    data, make = digits
    result = train(make, data, config(), "accuracy", on_epoch=lambda record: record.epoch < 1)
    assert result.pruned and len(result.epochs) == 2


def test_a_stop_request_interrupts_mid_epoch(digits) -> None:
    data, make = digits
    with pytest.raises(Interrupted):
        train(make, data, config(), "accuracy", should_stop=lambda: True)


def test_regression_metric_is_mse() -> None:
    data = load_dataset(DataSection(name="linear"), "mse")
    make = model_factory(ModelSection(name="linreg"), data)
    cfg = config() | {"optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, "epochs": 20, "schedule": {"name": "constant"}}
    result = train(make, data, cfg, "mse")
    assert result.metric < 0.02  # the noise variance is 0.01
