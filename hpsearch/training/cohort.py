"""Train K trial configs at once on one device, as one stacked model.

    results = train_cohort(make_model, data, configs, "accuracy", on_epoch=report)

Every member's parameters live in one `[K, P]` tensor (member k's are row k), and one
forward and one backward of the stacked model serve all members, with the dataset resident
on the device and every member seeing the same batches (`stacked.py`). The optimizer step
is vectorized (`updates.py`): members are ordered by optimizer kind, each kind's members are
a contiguous block of rows, and every hyperparameter is a `[n, 1]` tensor, so members of one
kind step together while each keeps its own learning rate, betas, momentum, eps, alpha,
weight decay and schedule. The update formulas follow torch.optim's single-tensor code line
by line, and schedules come from the very torch schedulers `build_optimizer` makes, so a
member's numbers are the reference engine's numbers (tested, fp32 on the CPU).

Members whose pruner says stop, or whose loss turns NaN/inf, leave at the end of the epoch;
the remaining rows are compacted and the others never notice.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..config.batches import resolve_batch_size
from ..optim import build_optimizer
from . import updates
from .data import Dataset, batch_order
from .evaluation import validation_metric
from .losses import member_losses
from .precision import autocast
from .results import Diverged, Epoch, Interrupted, TrainResult, divergence
from .stacked import stacked_forward

# Row views of the [K, P] gradient buffer are strided; autograd warns, but accumulates into
# them in place, which is what lets one optimizer step cover every parameter tensor.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class NotVectorizable(Exception):
    """The model cannot be trained as a stacked cohort (in-place buffers, randomness, ...)."""


def cohort_key(config: Mapping[str, Any], n_train: int) -> tuple[int, int, int]:
    """Configs with equal keys can share a cohort: same batches, same number of epochs."""
    return (resolve_batch_size(config["batch_size"], n_train), int(config["epochs"]), int(config["data_seed"]))


class Cohort:
    """The stacked model, its gradients, optimizer states and hyperparameters."""

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        data: Dataset,
        configs: Sequence[Mapping[str, Any]],
        precision: str = "fp32",
        exact: bool | None = None,
    ):
        if len({cohort_key(c, data.n_train) for c in configs}) != 1:
            raise ValueError("a cohort's members must share batch size, epochs and data seed")
        self.device = data.x_train.device
        self.data = data
        self.precision = precision
        # Stack members by optimizer kind; `self.members[row]` is the caller's index.
        order = sorted(range(len(configs)), key=lambda i: updates.KINDS.index(updates.kind_of(configs[i])))
        self.members = list(order)
        self.configs = [configs[i] for i in order]
        models = []
        for config in self.configs:
            torch.manual_seed(int(config["seed"]))  # as the reference engine initialises
            models.append(make_model())
        self.base = models[0].to(self.device)
        if any(True for _ in self.base.buffers()):
            raise NotVectorizable("the model has buffers (e.g. batch norm statistics)")
        self.shapes = [(name, p.shape) for name, p in self.base.named_parameters()]
        self.theta = torch.stack(
            [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models]
        ).to(self.device)
        self.grad = torch.zeros_like(self.theta)
        # One learning-rate schedule per member: the torch scheduler `build_optimizer` makes,
        # stepped on a stand-in parameter, is the single source of each epoch's rate.
        self._schedules = [build_optimizer([torch.zeros(1, requires_grad=True)], c) for c in self.configs]
        self._bind()
        self._blocks = self._make_blocks()
        self._set_learning_rates()
        self.step = 0
        # On the CPU every member is computed bit for bit as the reference engine would; on a
        # GPU the batched kernels run (torch.optim rounds differently there anyway).
        self.exact = self.device.type == "cpu" if exact is None else exact
        self._forward = stacked_forward(self.base, exact=self.exact)

    # -- layout ---------------------------------------------------------------------------

    def _bind(self) -> None:
        """Leaf views into theta (the parameters) whose .grad are views into grad."""
        k = self.theta.shape[0]
        self.params: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape in self.shapes:
            n = shape.numel()
            view = self.theta[:, offset : offset + n].view(k, *shape).requires_grad_(True)
            view.grad = self.grad[:, offset : offset + n].view(k, *shape)
            self.params[name] = view
            offset += n

    def _make_blocks(self) -> list[updates.Block]:
        blocks: list[updates.Block] = []
        start = 0
        while start < len(self.configs):
            kind = updates.kind_of(self.configs[start])
            stop = start
            while stop < len(self.configs) and updates.kind_of(self.configs[stop]) == kind:
                stop += 1
            optimizers = [c["optimizer"] for c in self.configs[start:stop]]
            blocks.append(updates.make_block(kind, start, optimizers, self.theta.shape[1], self.device))
            start = stop
        return blocks

    def _set_learning_rates(self) -> None:
        self.lrs = [opt.param_groups[0]["lr"] for opt, _ in self._schedules]
        for block in self._blocks:
            updates.set_learning_rates(block, self.lrs[block.start : block.stop])

    def keep(self, rows: list[int]) -> None:
        """Drop every member not in `rows` (positions in the current stack), in place."""
        index = torch.tensor(rows, device=self.device)
        blocks = self._blocks
        kept_in = {id(b): [r for r in rows if b.start <= r < b.stop] for b in blocks}
        self.theta = self.theta.index_select(0, index)
        self.grad = torch.zeros_like(self.theta)
        self.members = [self.members[r] for r in rows]
        self.configs = [self.configs[r] for r in rows]
        self._schedules = [self._schedules[r] for r in rows]
        self.lrs = [self.lrs[r] for r in rows]
        survivors: list[updates.Block] = []
        start = 0
        for block in blocks:
            mine = kept_in[id(block)]
            if not mine:
                continue
            updates.select(block, torch.tensor([r - block.start for r in mine], device=self.device), start)
            start += len(mine)
            survivors.append(block)
        self._blocks = survivors
        self._bind()

    # -- training ---------------------------------------------------------------------------

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self._forward(self.params, x).float()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One batch for every member; returns the members' losses [K] (not synchronised)."""
        self.grad.zero_()
        losses = member_losses(self._outputs(x), y, self.data.loss, self.exact)
        losses.sum().backward()
        with torch.no_grad():
            self.step += 1
            for block in self._blocks:
                rows = slice(block.start, block.stop)
                updates.step(block, self.theta[rows], self.grad[rows], self.step)
        return losses.detach()

    def end_epoch(self) -> None:
        for optimizer, scheduler in self._schedules:
            optimizer.step()  # a no-op on the stand-in; keeps torch's call-order check quiet
            scheduler.step()
        self._set_learning_rates()

    def evaluate(self, metric: str) -> list[float]:
        return validation_metric(self._outputs, self.data, metric, members=self.theta.shape[0], stacked=True)


# -- the engine ---------------------------------------------------------------------------------


# Called after each epoch with every member's record (keyed by the caller's index); returns
# the members to stop there (the pruner's decisions).
CohortCallback = Callable[[dict[int, Epoch]], set[int]]


def train_cohort(
    make_model: Callable[[], nn.Module],
    data: Dataset,
    configs: Sequence[Mapping[str, Any]],
    metric: str,
    *,
    on_epoch: CohortCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    precision: str = "fp32",
    exact: bool | None = None,
) -> list[TrainResult | Diverged]:
    """Train every config together; one result per config, in the caller's order.

    A member that diverged gets a `Diverged` (not raised); a member `on_epoch` stopped gets
    a TrainResult with `pruned`. Raises `Interrupted` when `should_stop()` turns true.
    """
    cohort = Cohort(make_model, data, configs, precision, exact)
    results: list[TrainResult | Diverged] = [TrainResult() for _ in configs]
    config = cohort.configs[0]
    batch_size = resolve_batch_size(config["batch_size"], data.n_train)
    device = cohort.device
    for epoch in range(int(config["epochs"])):
        started = time.perf_counter()
        lrs = list(cohort.lrs)
        total = torch.zeros(cohort.theta.shape[0], device=device)
        for index in batch_order(data.n_train, batch_size, int(config["data_seed"]), epoch, device):
            total += cohort.train_step(data.x_train[index], data.y_train[index]) * len(index)
            if should_stop is not None and should_stop():
                raise Interrupted()
        cohort.end_epoch()
        train_losses = [t / data.n_train for t in total.tolist()]  # as the reference divides
        values = cohort.evaluate(metric)
        share = (time.perf_counter() - started) / len(values)
        records: dict[int, Epoch] = {}
        for row, member in enumerate(cohort.members):
            result = results[member]
            assert isinstance(result, TrainResult)
            result.seconds += share
            reason = divergence(train_losses[row], values[row], epoch)
            if reason is not None:
                results[member] = Diverged(reason, result.epochs)
                continue
            records[member] = Epoch(epoch=epoch, metric=values[row], train_loss=train_losses[row], lr=lrs[row])
            result.epochs.append(records[member])
            result.metric = values[row]
        stopped = on_epoch(records) if on_epoch is not None and records else set()
        keep: list[int] = []
        for row, member in enumerate(cohort.members):
            if member in stopped:
                results[member].pruned = True  # type: ignore[union-attr]
            elif member in records:
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(cohort.members):
            cohort.keep(keep)
    return results
