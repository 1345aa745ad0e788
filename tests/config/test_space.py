"""The conditional search space and the trial configs it produces."""

from __future__ import annotations

import inspect
import json

import optuna
import pytest
import torch

from hpsearch.config.catalog import (
    CATALOG,
    OPTIMIZERS,
    SCHEDULE_CATALOG,
    SCHEDULES,
    arguments,
    optimizer_keys,
)
from hpsearch.config.space import describe, params_of, suggest_config, trial_seed
from hpsearch.config.spec import parse_study_file
from hpsearch.optim import build_optimizer
from tests.conftest import TINY_STUDY

FULL_SPACE = (TINY_STUDY.replace('optimizer = ["sgd", "adam"]', f"optimizer = {list(OPTIMIZERS)}") + (
    "momentum = {low = 0.5, high = 0.99}\nnesterov = [true, false]\nbeta1 = {low = 0.8, high = 0.99}\n"
    "alpha = 0.95\nweight_decay = {low = 1e-6, high = 1e-2, log = true}\nrho = {low = 0.8, high = 0.95}\n"
    'amsgrad = [false, true]\ncentered = [false, true]\nline_search = ["strong_wolfe", "none"]\n'
    f"schedule = {list(SCHEDULES)}\ngamma = {{low = 0.3, high = 0.9}}\nwarmup_epochs = [0, 1]\n"
    "factor = {low = 0.1, high = 0.5}\nT_0 = [1, 2]\n"
)).replace("epochs = 2", "epochs = 6").replace("batch_size = 64", "")
GENERIC = {"optimizer", "lr", "schedule", "warmup_epochs", "batch_size"}


def sample(text: str, n: int, seed: int = 0, sampler=None) -> list[tuple[dict, dict]]:
    spec = parse_study_file(text, "x.toml").spec
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((suggest_config(trial, spec, seed=trial_seed(0, trial.number)), dict(trial.params)))
        study.tell(trial, 0.5)
    return out


def takes(name: str, key: str) -> bool:
    return any(k.name == key for k in optimizer_keys(name))


def test_parameters_are_conditional_on_optimizer_and_schedule() -> None:
    optimizers, schedules = set(), set()
    for config, params in sample(FULL_SPACE + 'batch_size = [32, "full"]\n', 400):
        opt, sched = config["optimizer"], config["schedule"]
        name, kind = opt["name"], sched["name"]
        optimizers.add(name)
        schedules.add(kind)
        schedule_keys = {k.name for k in SCHEDULE_CATALOG[kind].keys}
        for param in set(params) - GENERIC:
            assert takes(name, param) or param in schedule_keys, (name, kind, param)
        # Every argument is spelled out: the config holds exactly the optimizer's arguments.
        assert set(opt) == set(arguments(name, {k.name: None for k in optimizer_keys(name)}))
        assert ("betas" in opt) == takes(name, "beta1")
        assert ("beta1" in params) == takes(name, "beta1")
        assert ("momentum" in params) == (name in ("momentum", "muon"))  # rmsprop's is its own
        assert ("alpha" not in params) and (opt.get("alpha") == 0.95) == (name == "rmsprop")
        assert ("gamma" in params) == (kind in ("step", "exponential"))
        assert ("warmup_epochs" in params) == SCHEDULE_CATALOG[kind].warmup
        if not SCHEDULE_CATALOG[kind].warmup:
            assert sched["warmup_epochs"] == 0
        if kind == "cosine":
            assert sched["T_max"] == 6 - sched["warmup_epochs"]
        if kind in ("linear", "polynomial"):
            assert sched["total_iters"] == 6 - sched["warmup_epochs"]
        if kind == "one-cycle":
            assert sched["max_lr"] == opt["lr"] and sched["total_steps"] == 6 and sched["cycle_momentum"] is False
        if kind == "plateau":
            assert sched["mode"] == "max"  # the study maximizes accuracy
        if name == "lbfgs":
            assert opt["line_search_fn"] in ("strong_wolfe", None)
    assert optimizers == set(OPTIMIZERS) and schedules == set(SCHEDULES)


def test_every_sampled_config_builds_its_optimizer_and_scheduler() -> None:
    """The config's keys are the constructor arguments: torch (or hpsearch) accepts each one."""
    for config, _ in sample(FULL_SPACE, 200, seed=1):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        optimizer, scheduler = build_optimizer(model.parameters(), config)
        assert optimizer.param_groups[0]["lr"] > 0
        assert json.loads(json.dumps(config)) == config


def test_fixed_values_stay_fixed_and_are_not_searched() -> None:
    for config, params in sample(FULL_SPACE, 40):
        assert "alpha" not in params and "batch_size" not in params
        assert config["batch_size"] == 128  # the default training batch size
        if config["optimizer"]["name"] == "rmsprop":
            assert config["optimizer"]["alpha"] == 0.95
        if config["optimizer"]["name"] == "adam":
            assert config["optimizer"]["betas"][1] == 0.999  # torch's default beta2


def test_left_out_keys_get_torch_defaults() -> None:
    text = TINY_STUDY.replace('["sgd", "adam"]', '["adagrad", "adamw", "adadelta", "rprop"]')
    for config, _ in sample(text, 40):
        opt = dict(config["optimizer"])
        cls = {"adagrad": torch.optim.Adagrad, "adamw": torch.optim.AdamW, "adadelta": torch.optim.Adadelta, "rprop": torch.optim.Rprop}[opt.pop("name")]
        opt.pop("lr")
        signature = inspect.signature(cls.__init__).parameters  # torch's defaults
        for key, value in opt.items():
            expected = signature[key].default
            assert (list(expected) if isinstance(expected, tuple) else expected) == value, (cls, key)
        assert config["schedule"] == {"name": "constant", "warmup_epochs": 0}


def test_two_optimizers_each_get_their_own_lr_range() -> None:
    text = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "adam", "adagrad"]') + (
        "\n[space.optimizers.adam]\nlr = { low = 1e-5, high = 1e-4, log = true }\namsgrad = [false, true]\n"
        "\n[space.optimizers.adagrad]\nlr = { low = 0.5, high = 0.9 }\n"
    )
    seen = set()
    for config, params in sample(text, 120, sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10)):
        opt = config["optimizer"]
        seen.add(opt["name"])
        if opt["name"] == "adam":
            assert 1e-5 <= opt["lr"] <= 1e-4 and params["adam.lr"] == opt["lr"] and "lr" not in params
            assert opt["amsgrad"] == params["adam.amsgrad"]
        elif opt["name"] == "adagrad":
            assert 0.5 <= opt["lr"] <= 0.9 and params["adagrad.lr"] == opt["lr"]
        else:
            assert 1e-3 <= opt["lr"] <= 0.3 and params["lr"] == opt["lr"]  # the flat range
    assert seen == {"sgd", "adam", "adagrad"}


def test_a_class_by_import_path_gets_lr_and_its_own_table() -> None:
    text = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["adam", "mypkg.optim:Lion"]') + (
        '\n[space.optimizers."mypkg.optim:Lion"]\nbeta1 = { low = 0.85, high = 0.95 }\nbeta2 = 0.99\n'
        'weight_decay = [0.0, 0.1]\nmode = "fast"\n'
    )
    found = [c for c, _ in sample(text, 40) if c["optimizer"]["name"] == "mypkg.optim:Lion"]
    assert found
    for config in found:
        opt = config["optimizer"]
        assert set(opt) == {"name", "lr", "betas", "weight_decay", "mode"}
        assert 0.85 <= opt["betas"][0] <= 0.95 and opt["betas"][1] == 0.99 and opt["mode"] == "fast"


def test_dampening_is_asked_only_without_nesterov() -> None:
    text = TINY_STUDY.replace('["sgd", "adam"]', '"momentum"') + "nesterov = [false, true]\ndampening = { low = 0.1, high = 0.5 }\n"
    for config, params in sample(text, 30):
        opt = config["optimizer"]
        assert ("dampening" in params) == (not opt["nesterov"])
        if opt["nesterov"]:
            assert opt["dampening"] == 0.0


def test_params_of_gives_back_the_params_of_every_sampled_config() -> None:
    text = FULL_SPACE + "\n[space.optimizers.adam]\nlr = { low = 1e-5, high = 1e-2, log = true }\namsgrad = [false, true]\n"
    spec = parse_study_file(text, "x.toml").spec
    for config, params in sample(text, 150, seed=2):
        assert params_of(config, spec) == params


def test_tpe_samples_the_whole_space_across_many_trials() -> None:
    """Optuna refuses one name with two kinds of distribution; the space never asks for that."""
    out = sample(FULL_SPACE, 40, sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    assert len(out) == 40


def test_config_is_plain_json_with_seed_and_epochs() -> None:
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
    text = FULL_SPACE + "\n[space.optimizers.adam]\nlr = { low = 1e-5, high = 1e-2, log = true }\n"
    rows = {key: (values, users) for key, values, users in describe(parse_study_file(text, "x.toml").spec)}
    assert rows["lr"][0] == "0.001 .. 0.3 (log)" and "adam" not in rows["lr"][1].split(", ")
    assert rows["adam.lr"] == ("1e-05 .. 0.01 (log)", "adam")
    assert rows["beta1"] == ("0.8 .. 0.99", "adam, adamw, adamax, nadam, radam")
    assert rows["alpha"] == ("0.95", "rmsprop")
    assert rows["eps"][0].startswith("default: ") and "1e-10 (adagrad)" in rows["eps"][0]
    assert rows["gamma"] == ("0.3 .. 0.9", "step, exponential")
    assert rows["mode"] == ("from study.metric", "plateau")
    assert rows["warmup_epochs"][0] == "one of 0, 1"


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_alone(name: str) -> None:
    text = TINY_STUDY.replace('["sgd", "adam"]', f'"{name}"')
    (config, params), = sample(text, 1)
    assert config["optimizer"]["name"] == name and "optimizer" not in params
    assert CATALOG[name].cls.split(":")[1] in type(build_optimizer(torch.nn.Linear(2, 2).parameters(), config)[0]).__name__ or name in ("momentum",)
