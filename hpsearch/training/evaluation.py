"""The validation metric, computed the same way for one model and for the K members of a cohort.

The validation set goes through the model in chunks that bound memory (`EVAL_EXAMPLES`
examples times members per forward pass, so a batched cohort of K takes chunks K times
smaller); each example's value is kept and each member's values are summed once, at the end,
so the summation never depends on the chunks. The outputs can: a matrix product's rounding
may depend on how many rows it has (a 64 -> 1 linear layer does), which is why the cohort's
exact path evaluates each member alone (`members=1`), in the chunks the reference engine uses.
A `module:function` loss has no per-example values: with metric "loss" it is applied to each
member's outputs for the whole validation set at once.
"""

from __future__ import annotations

from typing import Callable

import torch

from .data import Dataset
from .losses import example_metric, matched

EVAL_EXAMPLES = 8192  # examples x members per forward pass


def chunk_size(members: int) -> int:
    """Validation examples per forward pass for a model of `members` members."""
    return max(1, EVAL_EXAMPLES // max(1, members))


@torch.no_grad()
def validation_metric(
    forward: Callable[[torch.Tensor], torch.Tensor], data: Dataset, metric: str, members: int, stacked: bool = False
) -> list[float]:
    """Each member's metric on the validation set; `forward` maps inputs [n, ...] to outputs
    [n, C] (one model, `members` = 1) or, `stacked`, [K, n, C] (a cohort)."""
    x_val, y_val, loss = data.x_val, data.y_val, data.loss
    chunk = chunk_size(members)
    starts = range(0, len(x_val), chunk)
    outputs = (matched(forward(x_val[s : s + chunk]).float(), y_val[s : s + chunk], loss.task, stacked) for s in starts)
    if metric == "loss" and loss.custom:
        whole = torch.cat(list(outputs), dim=1 if stacked else 0)
        return [float(loss(member, y_val)) for member in (whole if stacked else whole.unsqueeze(0))]
    parts = [example_metric(o, y_val[s : s + chunk], loss, metric, stacked) for o, s in zip(outputs, starts)]
    values = torch.cat(parts, dim=-1).reshape(-1, len(x_val))  # [members, N]
    if values.device.type == "cpu":
        # Row by row: each member's sum is then the 1-D sum one model's evaluation makes.
        totals = torch.stack([row.sum() for row in values])
    else:
        totals = values.sum(dim=1)
    return (totals / len(x_val)).tolist()


def score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, metric: str = "accuracy", loss: str | None = None) -> float:
    """A trained model's metric on (x, y), computed exactly as hpsearch scores a trial:

        value = hpsearch.evaluate(model, x_val, y_val, "accuracy")   # == the trial's epoch value

    `metric` is accuracy, mse or loss; `loss` names the study's loss for metric "loss"
    (default: cross-entropy for class labels, mse for regression targets).
    """
    from .losses import resolve_loss

    task = "regression" if y.dtype.is_floating_point else "classification"
    targets = y.float().reshape(len(y), -1) if task == "regression" else y.long()
    data = Dataset("evaluate", task, x[:0], targets[:0], x, targets, loss=resolve_loss(loss, task))
    model.eval()
    return validation_metric(model, data, metric, members=1)[0]
