"""build_optimizer rebuilds exactly the torch objects a trial config describes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.optim import lr_scheduler as sched

from hpsearch import build_optimizer
from hpsearch.errors import ConfigError

OPTIMIZERS = {
    "sgd": ({"lr": 0.1, "weight_decay": 1e-4}, lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=1e-4)),
    "momentum": (
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.0},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    "adagrad": ({"lr": 0.02, "eps": 1e-10, "weight_decay": 0.0}, lambda p: torch.optim.Adagrad(p, lr=0.02)),
    "rmsprop": (
        {"lr": 0.003, "alpha": 0.95, "eps": 1e-7, "weight_decay": 1e-5},
        lambda p: torch.optim.RMSprop(p, lr=0.003, alpha=0.95, eps=1e-7, weight_decay=1e-5),
    ),
    "adam": (
        {"lr": 0.001, "betas": [0.85, 0.995], "eps": 1e-8, "weight_decay": 0.0},
        lambda p: torch.optim.Adam(p, lr=0.001, betas=(0.85, 0.995)),
    ),
    "adamw": (
        {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05},
        lambda p: torch.optim.AdamW(p, lr=0.001, weight_decay=0.05),
    ),
}
EPOCHS = 12
SCHEDULES = {
    "constant": ({}, lambda o: sched.ConstantLR(o, factor=1.0, total_iters=0)),
    "step": ({"step_size": 3, "gamma": 0.5}, lambda o: sched.StepLR(o, step_size=3, gamma=0.5)),
    "exponential": ({"gamma": 0.8}, lambda o: sched.ExponentialLR(o, gamma=0.8)),
    "cosine": ({"T_max": EPOCHS, "eta_min": 1e-5}, lambda o: sched.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=1e-5)),
}


def params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return list(torch.nn.Linear(4, 3).parameters())


def lr_trajectory(optimizer: torch.optim.Optimizer, scheduler: sched.LRScheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_equal_hand_built_ones(name: str) -> None:
    settings, hand = OPTIMIZERS[name]
    config = {"optimizer": {"name": name, **settings}, "schedule": {"name": "constant"}}
    ours, _ = build_optimizer(params(), config)
    theirs = hand(params())
    assert type(ours) is type(theirs)
    assert ours.defaults == theirs.defaults
    # ...and they take the same steps on the same gradients.
    a, b = params(), params()
    oa, _ = build_optimizer(a, config)
    ob = hand(b)
    for step in range(5):
        for p, q in zip(a, b):
            p.grad = q.grad = torch.full_like(p, 0.1 * (step + 1))
        oa.step()
        ob.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("warmup", [0, 3])
@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_equal_hand_built_ones(name: str, warmup: int) -> None:
    settings, hand = SCHEDULES[name]
    config = {
        "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0},
        "schedule": {"name": name, **settings, "warmup_epochs": warmup},
    }
    optimizer, scheduler = build_optimizer(params(), config)
    ours = lr_trajectory(optimizer, scheduler, EPOCHS)
    reference = torch.optim.SGD(params(), lr=0.1)
    if warmup:
        warm = sched.LinearLR(reference, start_factor=1 / (warmup + 1), total_iters=warmup)
        expected_scheduler = sched.SequentialLR(reference, [warm, hand(reference)], milestones=[warmup])
    else:
        expected_scheduler = hand(reference)
    assert ours == lr_trajectory(reference, expected_scheduler, EPOCHS)
    if warmup:
        assert ours[0] == pytest.approx(0.1 / (warmup + 1)) and ours[warmup] == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["step", "exponential", "cosine"])
def test_per_batch_scheduler_matches_at_epoch_boundaries(name: str) -> None:
    settings, _ = SCHEDULES[name]
    config = {"optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, "schedule": {"name": name, **settings, "warmup_epochs": 2}}
    per_epoch = lr_trajectory(*build_optimizer(params(), config), EPOCHS)
    per_batch = lr_trajectory(*build_optimizer(params(), config, steps_per_epoch=7), EPOCHS * 7)
    assert per_batch[::7] == pytest.approx(per_epoch, rel=1e-9)


def test_bad_configs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"config.optimizer.name: unknown optimizer 'lion'; use one of sgd"):
        build_optimizer(params(), {"optimizer": {"name": "lion", "lr": 1}, "schedule": {"name": "constant"}})
    with pytest.raises(ConfigError, match=r"config.schedule: step needs 'gamma'"):
        build_optimizer(params(), {"optimizer": {"name": "sgd", "lr": 1}, "schedule": {"name": "step", "step_size": 2}})
    with pytest.raises(ConfigError, match=r"config.optimizer: adam rejects"):
        build_optimizer(params(), {"optimizer": {"name": "adam", "lr": -1}, "schedule": {"name": "constant"}})
    with pytest.raises(ConfigError, match=r"config.schedule: must be a table"):
        build_optimizer(params(), {"optimizer": {"name": "sgd", "lr": 1}})


def test_the_public_api_does_not_import_optuna() -> None:
    code = "import sys, hpsearch; from hpsearch import build_optimizer, load_config; import hpsearch.optim; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
