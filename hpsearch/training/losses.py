"""What a trial minimises and what it is scored on, for one model or a whole cohort.

A study's `[train] loss` names the loss (`config/spec.py` lists the choices and defaults):

* `cross-entropy` — `F.cross_entropy` on logits `[N, C]`; the default for class labels;
* `nll` — `F.nll_loss` on log-probabilities `[N, C]`, for models that end in `log_softmax`;
* `mse` — `F.mse_loss`; the default for regression targets;
* `huber` — `F.huber_loss` (`loss_options = { delta = 1.0 }`);
* `smooth-l1` — `F.smooth_l1_loss` (`loss_options = { beta = 1.0 }`);
* `package.module:function` — called as `function(outputs, targets, **loss_options)`, returning
  the batch's mean loss as a scalar tensor.

Both engines use these definitions, for one model's outputs `[N, ...]` or a cohort's
`[K, N, ...]` (K members on the leading axis), so "loss" or "accuracy" means the same thing
wherever it is computed. Regression targets are `[N, T]`; a model may return `[N, T]`, or `[N]`
for one target. Any other shape is an error, never a broadcast: `[N]` against `[N, 1]` would
silently compare every output with every target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ..config.factories import load_factory
from ..config.spec import DEFAULT_LOSS, LOSS_TASKS
from ..errors import DataError, ModelError

_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "cross-entropy": F.cross_entropy,
    "nll": F.nll_loss,
    "mse": F.mse_loss,
    "huber": F.huber_loss,
    "smooth-l1": F.smooth_l1_loss,
}


@dataclass(frozen=True)
class Loss:
    """A study's loss: its name, the task it fits, its keyword arguments, and (for a
    `module:function` loss) the user's function."""

    name: str
    task: str  # "classification" or "regression"
    options: Mapping[str, Any] = field(default_factory=dict)
    function: Callable[..., torch.Tensor] | None = None

    @property
    def custom(self) -> bool:
        return self.function is not None

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss of one model's batch (outputs already matched to the targets)."""
        if self.function is not None:
            return self.function(outputs, targets, **self.options)
        return _FUNCTIONS[self.name](outputs, targets, **self.options)


def default_loss(task: str) -> Loss:
    return Loss(DEFAULT_LOSS[task], task)


def resolve_loss(name: str | None, task: str, options: Mapping[str, Any] | None = None, data: str = "the data") -> Loss:
    """The loss a study names (None: the default for the task), checked against the task."""
    options = dict(options or {})
    if name is None:
        return Loss(DEFAULT_LOSS[task], task, options)
    if name in LOSS_TASKS:
        wanted = LOSS_TASKS[name]
        if wanted != task:
            labels = "class labels" if wanted == "classification" else "floating-point regression targets"
            has = "integer class labels" if task == "classification" else "floating-point targets"
            fits = [n for n, t in LOSS_TASKS.items() if t == task]
            raise DataError(f"train.loss: {name} needs {labels}, but {data} has {has}; use {' or '.join(fits)}")
        return Loss(name, task, options)
    function = load_factory(name, "train.loss", DataError)
    return Loss(name, task, options, function)


def matched(outputs: torch.Tensor, targets: torch.Tensor, task: str, stacked: bool = False) -> torch.Tensor:
    """`outputs` in the shape the loss takes, or a ModelError naming both shapes.

    Classification: logits or log-probabilities `[N, C]`. Regression: exactly the targets'
    shape `[N, T]`, or `[N]` when T is 1 (made `[N, 1]`). `stacked`: outputs carry a
    leading member axis `[K, ...]`.
    """
    shape = tuple(outputs.shape[1:] if stacked else outputs.shape)
    n = int(targets.shape[0])
    if task == "classification":
        if len(shape) != 2 or shape[0] != n:
            raise ModelError(
                f"the model returns outputs of shape {_show(shape)} for a batch of {n}; a classifier "
                f"must return one score per class, [N, C] (here [{n}, C])"
            )
        return outputs
    wanted = tuple(targets.shape)
    if shape == wanted:
        return outputs
    if shape == (n,) and wanted == (n, 1):
        return outputs.unsqueeze(-1)
    try:
        spread = f"; they would broadcast to {_show(tuple(torch.broadcast_shapes(shape, wanted)))}"
    except RuntimeError:
        spread = ""
    raise ModelError(
        f"the model returns outputs of shape {_show(shape)} for targets of shape {_show(wanted)}{spread}, "
        f"which is an error, not a loss; return [N, {wanted[1]}]" + (" or [N]" if wanted[1] == 1 else "")
    )


def training_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: Loss) -> torch.Tensor:
    """The mean loss of one model's batch."""
    return loss(matched(outputs, targets, loss.task), targets)


def member_losses(outputs: torch.Tensor, targets: torch.Tensor, loss: Loss, exact: bool = False) -> torch.Tensor:
    """The mean loss of each member of a cohort: outputs [K, N, ...] -> [K].

    The gradient of the batched cross-entropy is the single model's bit for bit (its mean
    value may differ in the last digit). Every other loss, with `exact`, is the single-model
    loss called member by member, so its gradient is the reference engine's too; a
    `module:function` loss is always called member by member.
    """
    outputs = matched(outputs, targets, loss.task, stacked=True)
    k, n = outputs.shape[:2]
    plain_cross_entropy = loss.name == "cross-entropy" and not loss.options
    if loss.custom or (exact and not plain_cross_entropy):
        return torch.stack([loss(outputs[i], targets) for i in range(k)])
    if loss.task == "classification":
        flat = _FUNCTIONS[loss.name](outputs.reshape(k * n, -1), targets.repeat(k), reduction="none", **loss.options)
        return flat.view(k, n).mean(dim=1)
    every = _FUNCTIONS[loss.name](outputs, targets.expand_as(outputs), reduction="none", **loss.options)
    return every.reshape(k, -1).mean(dim=1)


def example_metric(outputs: torch.Tensor, targets: torch.Tensor, loss: Loss, metric: str, stacked: bool = False) -> torch.Tensor:
    """The metric of each example, in float64: outputs [..., N, C] -> [..., N].

    Per example (not summed), so that the caller sums each member's values once, in the same
    order however the examples were cut into chunks. (A `module:function` loss has no
    per-example values; `evaluation.py` scores it on the whole validation set.)
    """
    outputs = matched(outputs, targets, loss.task, stacked)
    if metric == "accuracy":
        return (outputs.argmax(dim=-1) == targets).to(torch.float64)
    wide = outputs.to(torch.float64)
    if metric == "mse":
        return (wide - targets).pow(2).sum(dim=-1) / targets.shape[-1]
    if loss.task == "classification":  # metric "loss" on class labels
        lead = wide.shape[:-2]
        every = _FUNCTIONS[loss.name](
            wide.reshape(-1, wide.shape[-1]), targets.expand(*lead, -1).reshape(-1), reduction="none", **loss.options
        )
        return every.view(*lead, -1)
    every = _FUNCTIONS[loss.name](wide, targets.to(torch.float64).expand_as(wide), reduction="none", **loss.options)
    return every.sum(dim=-1) / targets.shape[-1]


def _show(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
