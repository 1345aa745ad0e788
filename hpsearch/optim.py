"""Turn a trial config back into the exact `torch.optim` optimizer and LR scheduler.

This is the piece other projects import, so it depends on torch alone:

    from hpsearch.optim import build_optimizer
    optimizer, scheduler = build_optimizer(model.parameters(), config)
    for epoch in range(config["epochs"]):
        train_one_epoch(model, optimizer)
        scheduler.step()

A trial config's `optimizer` table holds the constructor arguments of the torch class plus
`name`; its `schedule` table holds the scheduler's arguments plus `name` and
`warmup_epochs`. Durations (`step_size`, `T_max`, `warmup_epochs`) are in epochs.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch.optim import lr_scheduler

from .errors import ConfigError

_OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "momentum": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def build_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    config: Mapping[str, Any],
    steps_per_epoch: int | None = None,
) -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler]:
    """The optimizer and scheduler a trial config describes.

    The scheduler is meant to be stepped once per epoch, as hpsearch trains. Pass
    `steps_per_epoch` to get one that is stepped once per batch instead: every duration is
    scaled by it (and an exponential decay spread over the batches), so the learning rate at
    each epoch boundary is the same.
    """
    optimizer = make_optimizer(params, config)
    return optimizer, make_scheduler(optimizer, config, steps_per_epoch)


def make_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], config: Mapping[str, Any]
) -> torch.optim.Optimizer:
    settings = dict(_table(config, "optimizer"))
    name = settings.pop("name", None)
    if name not in _OPTIMIZER_CLASSES:
        raise ConfigError(
            f"config.optimizer.name: unknown optimizer {name!r}; "
            f"use one of {', '.join(_OPTIMIZER_CLASSES)}"
        )
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    try:
        return _OPTIMIZER_CLASSES[name](params, **settings)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.optimizer: {name} rejects {settings}: {e}") from None


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    config: Mapping[str, Any],
    steps_per_epoch: int | None = None,
) -> lr_scheduler.LRScheduler:
    settings = dict(_table(config, "schedule"))
    name = settings.pop("name", None)
    warmup = int(settings.pop("warmup_epochs", 0))
    per = 1 if steps_per_epoch is None else int(steps_per_epoch)
    if per < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    try:
        # Warmup is built first: each scheduler applies its initial factor when built, and
        # SequentialLR keeps the first one's.
        warm = (
            lr_scheduler.LinearLR(
                optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup * per
            )
            if warmup > 0
            else None
        )
        if name == "constant":
            main: lr_scheduler.LRScheduler = lr_scheduler.ConstantLR(
                optimizer, factor=1.0, total_iters=0
            )
        elif name == "step":
            main = lr_scheduler.StepLR(
                optimizer, step_size=int(settings["step_size"]) * per, gamma=settings["gamma"]
            )
        elif name == "exponential":
            main = lr_scheduler.ExponentialLR(optimizer, gamma=settings["gamma"] ** (1.0 / per))
        elif name == "cosine":
            main = lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=int(settings["T_max"]) * per, eta_min=settings.get("eta_min", 0.0)
            )
        else:
            raise ConfigError(
                f"config.schedule.name: unknown schedule {name!r}; "
                "use one of constant, step, exponential, cosine"
            )
    except KeyError as e:
        raise ConfigError(f"config.schedule: {name} needs {e.args[0]!r}") from None
    if warm is None:
        return main
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup * per])


def _table(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    table = config.get(key) if isinstance(config, Mapping) else None
    if not isinstance(table, Mapping):
        raise ConfigError(f"config.{key}: must be a table with a 'name', got {table!r}")
    return table
