"""What a trial minimises and what it is scored on, for one model or a whole cohort.

Both engines use these definitions, for one model's outputs `[N, ...]` or a cohort's
`[K, N, ...]` (K members on the leading axis), so "loss" or "accuracy" means the same thing
wherever it is computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def example_metric(outputs: torch.Tensor, targets: torch.Tensor, task: str, metric: str) -> torch.Tensor:
    """The metric of each example, in float64: outputs [..., N, C] -> [..., N].

    Per example (not summed), so that the caller sums each member's values once, in the same
    order however the examples were cut into chunks.
    """
    if metric == "accuracy":
        return (outputs.argmax(dim=-1) == targets).to(torch.float64)
    if task == "classification":  # metric "loss" on a classification problem
        logp = torch.log_softmax(outputs.to(torch.float64), dim=-1)
        return -logp.gather(-1, targets.expand(*outputs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    squared = (outputs.to(torch.float64) - targets).pow(2)
    return squared.sum(dim=-1) / targets.shape[-1]
