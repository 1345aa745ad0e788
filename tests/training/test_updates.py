"""Every vectorized update rule is torch.optim's, bit for bit, member by member (CPU)."""

from __future__ import annotations

import random

import pytest
import torch

from hpsearch.config.catalog import CATALOG
from hpsearch.optim import build_optimizer
from hpsearch.training import rules, updates
from hpsearch.training.layout import Layout

# Odd sizes (vector tails) and one tensor above torch's parallel grain (32768 elements).
SHAPES = [(7, 13), (13,), (300, 131), (5,)]
STEPS = 5


def draw(name: str, rng: random.Random) -> dict:
    """An optimizer config with hyperparameters drawn at random, as a search would."""
    u = rng.uniform
    lr = 10 ** u(-4, -0.5)
    wd = rng.choice([0.0, 10 ** u(-5, -1)])
    betas = [u(0.5, 0.99), u(0.9, 0.9999)]
    eps = 10 ** u(-10, -5)
    configs = {
        "sgd": dict(lr=lr, weight_decay=wd),
        "momentum": dict(lr=lr, momentum=u(0.1, 0.99), nesterov=rng.random() < 0.5, weight_decay=wd, dampening=0.0),
        "adagrad": dict(lr=lr, eps=eps, weight_decay=wd, lr_decay=rng.choice([0.0, u(0, 0.1)]), initial_accumulator_value=rng.choice([0.0, u(0, 0.5)])),
        "rmsprop": dict(lr=lr, alpha=u(0.8, 0.999), eps=eps, weight_decay=wd, centered=rng.random() < 0.5, momentum=rng.choice([0.0, u(0.1, 0.9)])),
        "adam": dict(lr=lr, betas=betas, eps=eps, weight_decay=wd, amsgrad=rng.random() < 0.5),
        "adamw": dict(lr=10 ** u(-3, 0.5), betas=betas, eps=eps, weight_decay=u(0.05, 0.5), amsgrad=rng.random() < 0.5),
        "adadelta": dict(lr=u(0.1, 2), rho=u(0.8, 0.99), eps=eps, weight_decay=wd),
        "adamax": dict(lr=lr, betas=betas, eps=eps, weight_decay=wd),
        "nadam": dict(lr=lr, betas=betas, eps=eps, weight_decay=wd, momentum_decay=u(0, 0.01), decoupled_weight_decay=rng.random() < 0.5),
        "radam": dict(lr=lr, betas=[u(0.5, 0.99), u(0.5, 0.9)], eps=eps, weight_decay=wd, decoupled_weight_decay=rng.random() < 0.5),
        "asgd": dict(lr=lr, lambd=10 ** u(-5, -2), alpha=u(0.5, 1), t0=rng.choice([1.0, 2.0, 1e6]), weight_decay=wd),
        "rprop": dict(lr=lr, etas=[u(0.3, 0.7), u(1.1, 1.5)], step_sizes=[10 ** u(-7, -5), u(1, 50)]),
    }
    if name == "momentum" and not configs[name]["nesterov"]:
        configs[name]["dampening"] = rng.choice([0.0, u(0, 0.5)])
    return {"name": name, **configs[name]}


def variant(config: dict, seed: int) -> dict:
    """Seeds 0..3 cover every variant of a rule (the flags' combinations)."""
    config = dict(config)
    first, second = bool(seed & 1), bool(seed & 2)
    if config["name"] == "momentum":
        config["nesterov"] = first
        if first:
            config["dampening"] = 0.0
    elif config["name"] == "rmsprop":
        config["centered"] = first
        config["momentum"] = 0.5 if second else 0.0
    elif config["name"] in ("adam", "adamw"):
        config["amsgrad"] = first
    elif config["name"] in ("nadam", "radam"):
        config["decoupled_weight_decay"] = first
    return config


def vectorized_names() -> list[str]:
    return [name for name, o in CATALOG.items() if o.cohort == "vectorized"]


def model() -> torch.nn.Module:
    module = torch.nn.Module()
    for i, shape in enumerate(SHAPES):
        module.register_parameter(f"p{i}", torch.nn.Parameter(torch.zeros(shape)))
    return module


def grads(step: int, member: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + member)
    out = []
    for shape in SHAPES:
        g = torch.randn(shape, generator=generator) * 10 ** (2 * torch.rand(shape, generator=generator) - 1)
        g[torch.rand(shape, generator=generator) < 0.05] = 0.0  # Rprop's sign == 0 branch
        out.append(g)
    return out


def reference_run(config: dict, initial: list[torch.Tensor], member: int, lrs: list[float]) -> list[torch.Tensor]:
    params = [p.clone() for p in initial]
    optimizer, _ = build_optimizer(params, {"optimizer": config, "schedule": {"name": "constant"}})
    for step in range(STEPS):
        optimizer.param_groups[0]["lr"] = lrs[step]
        for p, g in zip(params, grads(step, member)):
            p.grad = g
        optimizer.step()
    return params


def cohort_run(configs: list[dict], initials: list[list[torch.Tensor]], schedule: list[list[float]], exact: bool = True) -> torch.Tensor:
    layout = Layout.of(model())
    rows = torch.zeros(len(configs), layout.width)
    for row, initial in zip(rows, initials):
        for s, p in zip(layout.slices(), initial):
            row[s] = p.reshape(-1)
    kinds = {updates.kind_of({"optimizer": c}) for c in configs}
    assert len(kinds) == 1, kinds
    block = updates.make_block(kinds.pop(), 0, configs, exact, rows.device)
    grad_rows = torch.zeros_like(rows)
    for step in range(STEPS):
        updates.set_learning_rates(block, [lrs[step] for lrs in schedule])
        for member in range(len(configs)):
            for s, g in zip(layout.slices(), grads(step, member)):
                grad_rows[member, s] = g.reshape(-1)
        rules.step(block, rows, grad_rows, step + 1)
    return layout.unpadded(rows)


def cases(name: str, seed: int, members: int = 3) -> tuple[list[dict], list[list[torch.Tensor]], list[list[float]]]:
    rng = random.Random(f"{name}/{seed}")
    # the same variant (a block), other hyperparameters
    configs = [variant(draw(name, rng), seed) for _ in range(members)]
    generator = torch.Generator().manual_seed(seed)
    initials = [[torch.randn(shape, generator=generator) for shape in SHAPES] for _ in configs]
    schedules = [[c["lr"] * (0.7**s) for s in range(STEPS)] for c in configs]
    return configs, initials, schedules


@pytest.fixture(params=["default threads", "one thread"])
def threads(request):
    before = torch.get_num_threads()
    if request.param == "one thread":
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", vectorized_names())
def test_each_rule_equals_torch_optim_bit_for_bit(name: str, threads) -> None:
    for seed in range(4):  # several variants (centered, amsgrad, nesterov, ...) per rule
        configs, initials, schedules = cases(name, seed)
        ours = cohort_run(configs, initials, schedules)
        for member, (config, initial, lrs) in enumerate(zip(configs, initials, schedules)):
            theirs = torch.cat([p.reshape(-1) for p in reference_run(config, initial, member, lrs)])
            different = (ours[member] != theirs).sum().item()
            assert different == 0, f"{config}: {different} of {theirs.numel()} parameters differ"


@pytest.mark.parametrize("name", vectorized_names())
def test_the_batched_path_a_gpu_takes_agrees_closely(name: str) -> None:
    configs, initials, schedules = cases(name, 0)
    exact = cohort_run(configs, initials, schedules, exact=True)
    batched = cohort_run(configs, initials, schedules, exact=False)
    torch.testing.assert_close(batched, exact, rtol=1e-5, atol=1e-6)


def test_adamw_decays_with_the_python_float_weight_decay() -> None:
    """torch computes 1 - lr * weight_decay in double precision from the Python floats; a
    float32 copy of weight_decay gives a different factor for many (lr, weight_decay) pairs."""
    rng = random.Random(0)
    pairs = [(rng.uniform(1, 3), rng.uniform(0.1, 0.5)) for _ in range(200)]
    configs = [{"name": "adamw", "lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": wd, "amsgrad": False} for lr, wd in pairs]
    block = updates.make_block("adamw", 0, configs, True, torch.device("cpu"))
    updates.set_learning_rates(block, [lr for lr, _ in pairs])
    expected = torch.tensor([1 - lr * wd for lr, wd in pairs], dtype=torch.float32).unsqueeze(1)
    assert torch.equal(block.hp["decay"], expected)
    float32_copy = (1 - torch.tensor([lr for lr, _ in pairs], dtype=torch.float64) * torch.tensor([wd for _, wd in pairs]).double()).float()
    assert not torch.equal(float32_copy.unsqueeze(1), expected)  # the break this guards against
