"""The conditional search space and the trial configs it produces."""

from __future__ import annotations

import inspect

import optuna
import pytest
import torch

from hpsearch.config.catalog import OPTIMIZERS, SCHEDULES
from hpsearch.config.space import describe, suggest_config, trial_seed
from hpsearch.config.spec import parse_study_file
from tests.conftest import TINY_STUDY

FULL_SPACE = (TINY_STUDY.replace('optimizer = ["sgd", "adam"]', f"optimizer = {list(OPTIMIZERS)}") + (
    "momentum = {low = 0.5, high = 0.99}\nnesterov = [true, false]\nbeta1 = {low = 0.8, high = 0.99}\n"
    "alpha = 0.95\nweight_decay = {low = 1e-6, high = 1e-2, log = true}\n"
    f"schedule = {list(SCHEDULES)}\ngamma = {{low = 0.3, high = 0.9}}\nwarmup_epochs = [0, 1]\n"
)).replace("epochs = 2", "epochs = 6").replace("batch_size = 64", "")


def sample(text: str, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    spec = parse_study_file(text, "x.toml").spec
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((suggest_config(trial, spec, seed=trial_seed(0, trial.number)), dict(trial.params)))
        study.tell(trial, 0.5)
    return out


def test_parameters_are_conditional_on_optimizer_and_schedule() -> None:
    seen = set()
    for config, params in sample(FULL_SPACE + 'batch_size = [32, "full"]\n', 300):
        opt, sched = config["optimizer"], config["schedule"]
        seen.add((opt["name"], sched["name"]))
        assert ("betas" in opt) == (opt["name"] in ("adam", "adamw"))
        assert ("beta1" in params) == (opt["name"] in ("adam", "adamw"))
        assert ("momentum" in params) == (opt["name"] == "momentum")
        assert ("nesterov" in opt) == (opt["name"] == "momentum")
        assert ("alpha" in opt) == (opt["name"] == "rmsprop")
        assert ("eps" in opt) == (opt["name"] not in ("sgd", "momentum"))
        assert ("gamma" in params) == (sched["name"] in ("step", "exponential"))
        assert ("gamma" in sched) == (sched["name"] in ("step", "exponential"))
        assert ("step_size" in sched) == (sched["name"] == "step")
        if sched["name"] == "cosine":
            assert sched["T_max"] == 6 - sched["warmup_epochs"]
    assert len(seen) == len(OPTIMIZERS) * len(SCHEDULES)


def test_fixed_values_stay_fixed_and_are_not_searched() -> None:
    for config, params in sample(FULL_SPACE, 40):
        assert "alpha" not in params and "batch_size" not in params
        assert config["batch_size"] == 128  # the default training batch size
        if config["optimizer"]["name"] == "rmsprop":
            assert config["optimizer"]["alpha"] == 0.95
        if config["optimizer"]["name"] == "adam":
            assert config["optimizer"]["betas"][1] == 0.999  # torch's default beta2


def test_left_out_keys_get_torch_defaults() -> None:
    text = TINY_STUDY.replace('["sgd", "adam"]', '["adagrad", "adamw"]')
    for config, _ in sample(text, 20):
        opt = config["optimizer"]
        if opt["name"] == "adagrad":
            assert (opt["eps"], opt["weight_decay"]) == (1e-10, 0.0)
        else:
            assert (opt["betas"], opt["eps"], opt["weight_decay"]) == ([0.9, 0.999], 1e-8, 0.01)
        assert config["schedule"] == {"name": "constant", "warmup_epochs": 0}


def test_optimizer_keys_are_the_torch_constructor_arguments() -> None:
    classes = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
               "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    for config, _ in sample(FULL_SPACE, 100):
        opt = dict(config["optimizer"])
        arguments = inspect.signature(classes[opt.pop("name")]).parameters
        assert set(opt) <= set(arguments)


def test_config_is_plain_json_with_seed_and_epochs() -> None:
    import json

    config, _ = sample(TINY_STUDY, 1)[0]
    assert json.loads(json.dumps(config)) == config
    assert config["epochs"] == 2 and config["batch_size"] == 64 and config["data_seed"] == 0
    assert config["seed"] == trial_seed(0, 0)


def test_trial_seed_is_a_function_of_study_seed_and_number() -> None:
    assert trial_seed(0, 5) == trial_seed(0, 5)
    assert len({trial_seed(0, n) for n in range(100)}) == 100
    assert trial_seed(1, 5) != trial_seed(0, 5)
    assert 0 <= trial_seed(123, 456) < 2**31


def test_seeded_sampling_is_reproducible() -> None:
    assert sample(FULL_SPACE, 10, seed=3) == sample(FULL_SPACE, 10, seed=3)
    assert sample(FULL_SPACE, 10, seed=3) != sample(FULL_SPACE, 10, seed=4)


def test_describe_lists_every_key_with_whom_it_applies_to() -> None:
    rows = {key: (values, users) for key, values, users in describe(parse_study_file(FULL_SPACE, "x.toml").spec)}
    assert rows["lr"] == ("0.001 .. 0.3 (log)", "all")
    assert rows["beta1"] == ("0.8 .. 0.99", "adam, adamw")
    assert rows["beta2"] == ("0.999 (default)", "adam, adamw")
    assert rows["alpha"] == ("0.95", "rmsprop")
    assert rows["eps"][0] == "default: 1e-08 (adam), 1e-08 (adamw), 1e-08 (rmsprop), 1e-10 (adagrad)"
    assert rows["gamma"] == ("0.3 .. 0.9", "step, exponential")
    assert rows["warmup_epochs"] == ("one of 0, 1", "all")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_alone(name: str) -> None:
    text = TINY_STUDY.replace('["sgd", "adam"]', f'"{name}"')
    (config, params), = sample(text, 1)
    assert config["optimizer"]["name"] == name and "optimizer" not in params
