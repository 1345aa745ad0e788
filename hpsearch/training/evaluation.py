"""The validation metric, computed the same way for one model and for the K members of a cohort.

The validation set goes through the model in chunks that bound memory (`EVAL_EXAMPLES`
examples times members per forward pass, so a batched cohort of K takes chunks K times
smaller); each example's value is kept and each member's values are summed once, at the end,
so the summation never depends on the chunks. The outputs can: a matrix product's rounding
may depend on how many rows it has (a 64 -> 1 linear layer does), which is why the cohort's
exact path evaluates each member alone (`members=1`), in the chunks the reference engine uses.
"""

from __future__ import annotations

from typing import Callable

import torch

from .data import Dataset
from .losses import example_metric

EVAL_EXAMPLES = 8192  # examples x members per forward pass


def chunk_size(members: int) -> int:
    """Validation examples per forward pass for a model of `members` members."""
    return max(1, EVAL_EXAMPLES // max(1, members))


@torch.no_grad()
def validation_metric(
    forward: Callable[[torch.Tensor], torch.Tensor], data: Dataset, metric: str, members: int
) -> list[float]:
    """Each member's metric on the validation set; `forward` maps inputs [n, ...] to outputs
    [n, C] (one model, `members` = 1) or [K, n, C] (a cohort)."""
    x_val, y_val = data.x_val, data.y_val
    chunk = chunk_size(members)
    parts = [
        example_metric(forward(x_val[start : start + chunk]).float(), y_val[start : start + chunk], data.task, metric)
        for start in range(0, len(x_val), chunk)
    ]
    values = torch.cat(parts, dim=-1).reshape(-1, len(x_val))  # [members, N]
    if values.device.type == "cpu":
        # Row by row: each member's sum is then the 1-D sum one model's evaluation makes.
        totals = torch.stack([row.sum() for row in values])
    else:
        totals = values.sum(dim=1)
    return (totals / len(x_val)).tolist()
