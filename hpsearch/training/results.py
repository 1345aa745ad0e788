"""What training reports and how it ends, the same for both engines.

An `Epoch` is what a trial reports after each epoch; a `TrainResult` is how its training
went. Training ends early by raising: `Diverged` (the loss became NaN or infinite) or
`Interrupted` (the worker was asked to stop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch


@dataclass
class Epoch:
    """One epoch of one trial, as reported."""

    epoch: int
    metric: float
    train_loss: float
    lr: float


@dataclass
class TrainResult:
    """How one trial's training went; `pruned` when `on_epoch` asked it to stop."""

    metric: float = math.nan
    epochs: list[Epoch] = field(default_factory=list)
    seconds: float = 0.0
    pruned: bool = False
    # The final parameters, flattened in `model.parameters()` order, when the engine was asked
    # to keep them (`keep_parameters=True`).
    parameters: "torch.Tensor | None" = None


class Diverged(Exception):
    """The training loss became NaN or infinite; the trial cannot go on."""

    def __init__(self, reason: str, epochs: list[Epoch]):
        super().__init__(reason)
        self.reason = reason
        self.epochs = epochs


class Interrupted(Exception):
    """The worker was asked to stop (SIGTERM / Ctrl-C) in the middle of training."""


# Called after each epoch; returns False to stop the trial there (the pruner's decision).
EpochCallback = Callable[[Epoch], bool]


def divergence(train_loss: float, metric: float, epoch: int) -> str | None:
    """Why an epoch's numbers mean the trial diverged, or None when they are finite."""
    if math.isfinite(train_loss) and math.isfinite(metric):
        return None
    bad = train_loss if not math.isfinite(train_loss) else metric
    what = "training loss" if not math.isfinite(train_loss) else "validation metric"
    return f"{what} became {bad} in epoch {epoch}"
