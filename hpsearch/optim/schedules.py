"""Trial config -> `torch.optim.lr_scheduler` scheduler, with optional linear warmup.

Durations in the `schedule` table (`step_size`, `T_max`, `warmup_epochs`) are in epochs;
given `steps_per_epoch`, they are scaled so the scheduler can be stepped once per batch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.optim import lr_scheduler

from ..errors import ConfigError
from .trial_config import table


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    config: Mapping[str, Any],
    steps_per_epoch: int | None = None,
) -> lr_scheduler.LRScheduler:
    settings = dict(table(config, "schedule"))
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
