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
        {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05, "amsgrad": True},
        lambda p: torch.optim.AdamW(p, lr=0.001, weight_decay=0.05, amsgrad=True),
    ),
    "adadelta": ({"lr": 0.5, "rho": 0.85, "eps": 1e-6, "weight_decay": 0.0}, lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.85)),
    "adamax": ({"lr": 0.002, "betas": [0.8, 0.99], "eps": 1e-8, "weight_decay": 0.0}, lambda p: torch.optim.Adamax(p, lr=0.002, betas=(0.8, 0.99))),
    "nadam": (
        {"lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "momentum_decay": 0.005, "decoupled_weight_decay": True},
        lambda p: torch.optim.NAdam(p, lr=0.002, weight_decay=0.01, momentum_decay=0.005, decoupled_weight_decay=True),
    ),
    "radam": ({"lr": 0.001, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.0, "decoupled_weight_decay": False}, lambda p: torch.optim.RAdam(p, lr=0.001, betas=(0.9, 0.99))),
    "asgd": ({"lr": 0.01, "lambd": 1e-3, "alpha": 0.5, "t0": 2.0, "weight_decay": 0.0}, lambda p: torch.optim.ASGD(p, lr=0.01, lambd=1e-3, alpha=0.5, t0=2.0)),
    "rprop": ({"lr": 0.01, "etas": [0.4, 1.3], "step_sizes": [1e-6, 10.0]}, lambda p: torch.optim.Rprop(p, lr=0.01, etas=(0.4, 1.3), step_sizes=(1e-6, 10.0))),
    "adafactor": ({"lr": 0.01, "beta2_decay": -0.7, "d": 1.0, "weight_decay": 0.0}, lambda p: torch.optim.Adafactor(p, lr=0.01, beta2_decay=-0.7)),
}
EPOCHS = 12
SCHEDULES = {
    "constant": ({}, lambda o: sched.ConstantLR(o, factor=1.0, total_iters=0)),
    "step": ({"step_size": 3, "gamma": 0.5}, lambda o: sched.StepLR(o, step_size=3, gamma=0.5)),
    "exponential": ({"gamma": 0.8}, lambda o: sched.ExponentialLR(o, gamma=0.8)),
    "cosine": ({"T_max": EPOCHS, "eta_min": 1e-5}, lambda o: sched.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=1e-5)),
    "linear": ({"start_factor": 1.0, "end_factor": 0.1, "total_iters": EPOCHS}, lambda o: sched.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=EPOCHS)),
    "polynomial": ({"total_iters": EPOCHS, "power": 2.0}, lambda o: sched.PolynomialLR(o, total_iters=EPOCHS, power=2.0)),
    "cosine-restarts": ({"T_0": 3, "T_mult": 2, "eta_min": 1e-4}, lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-4)),
}
# Schedules without warmup: one-cycle warms up on its own, reduce-on-plateau follows the metric.
ONE_CYCLE = {"max_lr": 0.1, "total_steps": EPOCHS, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0, "anneal_strategy": "linear", "cycle_momentum": False}


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


@pytest.mark.parametrize("name", ["step", "exponential", "cosine", "linear", "polynomial", "cosine-restarts"])
def test_per_batch_scheduler_matches_at_epoch_boundaries(name: str) -> None:
    settings = SCHEDULES[name][0]
    config = {"optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, "schedule": {"name": name, **settings, "warmup_epochs": 2}}
    per_epoch = lr_trajectory(*build_optimizer(params(), config), EPOCHS)
    per_batch = lr_trajectory(*build_optimizer(params(), config, steps_per_epoch=7), EPOCHS * 7)
    assert per_batch[::7] == pytest.approx(per_epoch, rel=1e-9)


def test_one_cycle_equals_torchs_and_takes_no_warmup() -> None:
    config = {"optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, "schedule": {"name": "one-cycle", **ONE_CYCLE, "warmup_epochs": 0}}
    reference = torch.optim.SGD(params(), lr=0.1)
    hand = sched.OneCycleLR(reference, max_lr=0.1, total_steps=EPOCHS, pct_start=0.25, div_factor=10.0, final_div_factor=100.0, anneal_strategy="linear", cycle_momentum=False)
    assert lr_trajectory(*build_optimizer(params(), config), EPOCHS) == lr_trajectory(reference, hand, EPOCHS)
    with pytest.raises(ConfigError, match="one-cycle takes no warmup"):
        build_optimizer(params(), {**config, "schedule": {**config["schedule"], "warmup_epochs": 1}})


def test_reduce_on_plateau_is_stepped_with_the_metric() -> None:
    settings = {"mode": "min", "factor": 0.5, "patience": 1, "threshold": 1e-4, "cooldown": 0, "min_lr": 1e-3}
    optimizer, scheduler = build_optimizer(params(), {"optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, "schedule": {"name": "plateau", **settings, "warmup_epochs": 0}})
    reference = torch.optim.SGD(params(), lr=0.1)
    hand = sched.ReduceLROnPlateau(reference, **settings)
    for value in [1.0, 0.9, 0.9, 0.9, 0.95, 0.5, 0.6, 0.7, 0.8]:
        for o, s in ((optimizer, scheduler), (reference, hand)):
            o.step()
            s.step(value)
        assert optimizer.param_groups[0]["lr"] == reference.param_groups[0]["lr"]
    assert reference.param_groups[0]["lr"] < 0.1  # it did reduce


def test_muon_is_torchs_muon_for_matrices_and_adamw_for_the_rest() -> None:
    if not hasattr(torch.optim, "Muon"):
        pytest.skip(f"torch {torch.__version__} has no torch.optim.Muon")
    torch.manual_seed(0)
    ours_model, theirs_model = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    theirs_model.load_state_dict(ours_model.state_dict())
    config = {"optimizer": {"name": "muon", "lr": 0.01, "weight_decay": 0.1, "momentum": 0.9, "nesterov": True, "ns_steps": 5, "adjust_lr_fn": "match_rms_adamw"}, "schedule": {"name": "step", "step_size": 1, "gamma": 0.5}}
    ours, scheduler = build_optimizer(ours_model.parameters(), config)
    muon = torch.optim.Muon([theirs_model.weight], lr=0.01, weight_decay=0.1, momentum=0.9, nesterov=True, ns_steps=5, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW([theirs_model.bias], lr=0.01, weight_decay=0.1)
    for step in range(4):
        for p, q in zip(ours_model.parameters(), theirs_model.parameters()):
            p.grad = q.grad = torch.full_like(p, 0.1 * (step + 1)) + torch.arange(p.numel()).view_as(p) * 0.01
        ours.step()
        muon.step()
        adamw.step()
        scheduler.step()
        for o in (muon, adamw):
            o.param_groups[0]["lr"] *= 0.5
    assert all(torch.equal(p, q) for p, q in zip(ours_model.parameters(), theirs_model.parameters()))
    assert ours.param_groups[0]["lr"] == muon.param_groups[0]["lr"]
    state = ours.state_dict()
    again, _ = build_optimizer(ours_model.parameters(), config)
    again.load_state_dict(state)
    assert len(again.state) == 2


def test_any_optimizer_class_by_import_path(tmp_path) -> None:
    """A class the test writes into the working directory, rebuilt from its import path."""
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "class Sign(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=0.01, betas=(0.9, 0.99), scale=1.0):\n"
        "        super().__init__(params, dict(lr=lr, betas=betas, scale=scale))\n"
        "    @torch.no_grad()\n"
        "    def step(self, closure=None):\n"
        "        for group in self.param_groups:\n"
        "            for p in group['params']:\n"
        "                p.add_(p.grad.sign(), alpha=-group['lr'] * group['scale'] * group['betas'][0])\n"
    )
    config = {"optimizer": {"name": "mine:Sign", "lr": 0.1, "betas": [0.5, 0.9], "scale": 2.0}, "schedule": {"name": "constant"}}
    optimizer, _ = build_optimizer(params(), config)
    assert type(optimizer).__name__ == "Sign" and optimizer.defaults == {"lr": 0.1, "betas": (0.5, 0.9), "scale": 2.0}
    with pytest.raises(ConfigError, match=r"config.optimizer.name: 'mine:params' is not a torch.optim.Optimizer subclass"):
        (tmp_path / "mine.py").write_text((tmp_path / "mine.py").read_text() + "params = lambda: None\n")
        import importlib  # noqa: E401
        import sys

        sys.modules.pop("mine", None)
        importlib.invalidate_caches()
        build_optimizer(params(), {**config, "optimizer": {"name": "mine:params"}})
    with pytest.raises(ConfigError, match=r"cannot import module 'nowhere'"):
        build_optimizer(params(), {**config, "optimizer": {"name": "nowhere:Lion", "lr": 0.1}})


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
