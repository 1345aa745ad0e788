"""Turn a trial config back into the exact optimizer and LR scheduler it describes.

This is the piece other projects import, so it depends on torch alone (and imports
neither Optuna nor SQLAlchemy):

    from hpsearch.optim import build_optimizer
    optimizer, scheduler = build_optimizer(model.parameters(), config)
    for epoch in range(config["epochs"]):
        train_one_epoch(model, optimizer)
        scheduler.step()

A trial config's `optimizer` table holds the constructor arguments of the class plus `name`
(a torch.optim class, one of hpsearch's own, or `package.module:Class`); its `schedule` table
holds the scheduler's arguments plus `name` and `warmup_epochs`. Durations (`step_size`,
`T_max`, `warmup_epochs`, ...) are in epochs. hpsearch's own optimizers live here too:
`Newton`, `ConjugateGradient` (both stepped with a closure, like torch.optim.LBFGS) and
`Muon` (torch's Muon for matrices, AdamW for the rest).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch.optim import lr_scheduler

from .cg import ConjugateGradient
from .muon import Muon
from .newton import Newton
from .optimizers import make_optimizer, needs_closure
from .schedules import is_plateau, make_scheduler

__all__ = [
    "ConjugateGradient", "Muon", "Newton", "build_optimizer", "is_plateau", "make_optimizer", "make_scheduler",
    "needs_closure",
]


def build_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    config: Mapping[str, Any],
    steps_per_epoch: int | None = None,
) -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler]:
    """The optimizer and scheduler a trial config describes.

    The scheduler is meant to be stepped once per epoch, as hpsearch trains (reduce-on-plateau
    with the epoch's validation metric: `scheduler.step(value)`). Pass `steps_per_epoch` to get
    one that is stepped once per batch instead: every duration is scaled by it (and an
    exponential decay spread over the batches), so the learning rate at each epoch boundary
    is the same.
    """
    optimizer = make_optimizer(params, config)
    return optimizer, make_scheduler(optimizer, config, steps_per_epoch)
