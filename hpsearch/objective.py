"""What a trial optimizes, and how its training ends.

Both engines use these definitions, for one model's outputs `[N, ...]` or a cohort's
`[K, N, ...]` (K members on the leading axis), so "accuracy" or "diverged" means the same
thing wherever it is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F


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


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast on CUDA when asked for; otherwise nothing changes (fp32)."""
    enabled = precision == "bf16" and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def training_loss(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    """The mean loss of one model's batch: cross-entropy, or squared error for regression."""
    if task == "classification":
        return F.cross_entropy(outputs, targets)
    return F.mse_loss(outputs, targets)


def member_losses(outputs: torch.Tensor, targets: torch.Tensor, task: str, exact: bool = False) -> torch.Tensor:
    """The mean loss of each member of a cohort: outputs [K, N, ...] -> [K].

    The gradient of the batched cross-entropy is the single model's bit for bit (its mean
    value may differ in the last digit). For squared error `exact` calls the single-model loss
    member by member, so its gradient is the reference engine's too.
    """
    if exact and task != "classification":
        return torch.stack([training_loss(outputs[i], targets, task) for i in range(outputs.shape[0])])
    k, n = outputs.shape[:2]
    if task == "classification":
        flat = F.cross_entropy(outputs.reshape(k * n, -1), targets.repeat(k), reduction="none")
        return flat.view(k, n).mean(dim=1)
    return (outputs - targets).pow(2).reshape(k, -1).mean(dim=1)


def summed_metric(outputs: torch.Tensor, targets: torch.Tensor, task: str, metric: str) -> torch.Tensor:
    """The metric summed over a chunk of examples, per member: [..., N, C] -> [...].

    Summed (not averaged) so chunks of a validation set add up; divide by its size.
    """
    if metric == "accuracy":
        return (outputs.argmax(dim=-1) == targets).sum(dim=-1).to(torch.float64)
    if task == "classification":  # metric "loss" on a classification problem
        logp = torch.log_softmax(outputs.to(torch.float64), dim=-1)
        picked = logp.gather(-1, targets.expand(*outputs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return -picked.sum(dim=-1)
    squared = (outputs.to(torch.float64) - targets).pow(2)
    return squared.flatten(start_dim=-2).sum(dim=-1) / targets.shape[-1]
