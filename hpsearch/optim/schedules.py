"""Trial config -> `torch.optim.lr_scheduler` scheduler, with optional linear warmup.

Durations in the `schedule` table (`step_size`, `T_max`, `T_0`, `total_iters`, `total_steps`,
`warmup_epochs`) are in epochs; given `steps_per_epoch`, they are scaled so the scheduler can
be stepped once per batch (one-cycle's phases then no longer end on epoch boundaries).
Reduce-on-plateau is the exception: it is stepped with the validation metric,
once per epoch (`scheduler.step(value)`), however it is built.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.optim import lr_scheduler

from ..config.catalog import SCHEDULES
from ..errors import ConfigError
from .trial_config import table


def _main(optimizer: torch.optim.Optimizer, name: Any, settings: dict[str, Any], per: int) -> lr_scheduler.LRScheduler:
    if name == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=int(settings["step_size"]) * per, gamma=settings["gamma"])
    if name == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=settings["gamma"] ** (1.0 / per))
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(settings["T_max"]) * per, eta_min=settings.get("eta_min", 0.0))
    if name == "linear":
        return lr_scheduler.LinearLR(
            optimizer, start_factor=settings.get("start_factor", 1.0), end_factor=settings["end_factor"],
            total_iters=int(settings["total_iters"]) * per,
        )
    if name == "polynomial":
        return lr_scheduler.PolynomialLR(optimizer, total_iters=int(settings["total_iters"]) * per, power=settings["power"])
    if name == "cosine-restarts":
        return lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=int(settings["T_0"]) * per, T_mult=int(settings["T_mult"]), eta_min=settings.get("eta_min", 0.0)
        )
    if name == "one-cycle":
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings["max_lr"], total_steps=int(settings["total_steps"]) * per,
            pct_start=settings["pct_start"], anneal_strategy=settings["anneal_strategy"],
            div_factor=settings["div_factor"], final_div_factor=settings["final_div_factor"],
            cycle_momentum=settings.get("cycle_momentum", False),
        )
    if name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=settings["mode"], factor=settings["factor"], patience=int(settings["patience"]),
            threshold=settings["threshold"], cooldown=int(settings["cooldown"]), min_lr=settings["min_lr"],
        )
    raise ConfigError(f"config.schedule.name: unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}")


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    config: Mapping[str, Any],
    steps_per_epoch: int | None = None,
) -> lr_scheduler.LRScheduler:
    settings = dict(table(config, "schedule"))
    name = settings.pop("name", None)
    warmup = int(settings.pop("warmup_epochs", 0))
    per = 1 if steps_per_epoch is None or name == "plateau" else int(steps_per_epoch)
    if per < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if warmup and name in ("one-cycle", "plateau"):
        raise ConfigError(f"config.schedule.warmup_epochs: {name} takes no warmup, got {warmup}")
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
        main = _main(optimizer, name, settings, per)
    except KeyError as e:
        raise ConfigError(f"config.schedule: {name} needs {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.schedule: {name} rejects {settings}: {e}") from None
    if warm is None:
        return main
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup * per])


def is_plateau(scheduler: Any) -> bool:
    """Whether the scheduler is stepped with the validation metric (reduce-on-plateau)."""
    return isinstance(scheduler, lr_scheduler.ReduceLROnPlateau)
