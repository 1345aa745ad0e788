"""Train K trial configs at once on one device, as one stacked model.

    results = train_cohort(make_model, data, configs, "accuracy", on_epoch=report)

Every member's parameters live in one `[K, P]` tensor (member k's are row k, `layout.py`),
and every member sees the same batches, with the dataset resident on the device. On a GPU one
batched forward and backward serve all members (`stacked.py`); on the CPU each member runs
the single model's own kernels, so its numbers are the reference engine's. The optimizer step
is vectorized (`updates.py`, `rules.py`): members are ordered by update rule, each rule's
members are a contiguous block of rows, and every hyperparameter is a `[n, 1]` tensor, so
members of one rule step together while each keeps its own learning rate, betas, momentum,
eps, weight decay and schedule. Adafactor and Muon members step with torch's own class on
views of their rows. Schedules are the very torch schedulers `build_optimizer` makes, one per
member; reduce-on-plateau is stepped with the member's own validation metric.

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
from ..optim import build_optimizer, is_plateau
from . import rules, updates
from .data import Dataset, batch_order
from .evaluation import validation_metric
from .layout import Layout
from .losses import member_losses, training_loss
from .precision import autocast
from .results import Diverged, Epoch, Interrupted, TrainResult, divergence
from .stacked import member_forward, member_outputs, stacked_forward

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
        # On the CPU every member is computed bit for bit as the reference engine would; on a
        # GPU the batched kernels run (torch.optim rounds differently there anyway).
        self.exact = self.device.type == "cpu" if exact is None else exact
        # Stack members by update rule; `self.members[row]` is the caller's index.
        kinds = [updates.kind_of(c) for c in configs]
        order = sorted(range(len(configs)), key=lambda i: updates.order_key(kinds[i]))
        self.members = list(order)
        self.configs = [configs[i] for i in order]
        self.kinds = [kinds[i] for i in order]
        models = []
        for config in self.configs:
            torch.manual_seed(int(config["seed"]))  # as the reference engine initialises
            models.append(make_model())
        self.base = models[0].to(self.device)
        if any(True for _ in self.base.buffers()):
            raise NotVectorizable("the model has buffers (e.g. batch norm statistics)")
        self.layout = Layout.of(self.base)
        self.theta = torch.stack([self.layout.row(m) for m in models]).to(self.device)
        self.grad = torch.zeros_like(self.theta)
        self._blocks = self._make_blocks()
        self._bind()
        # One schedule per member: the scheduler `build_optimizer` makes is the single source
        # of each epoch's rate. Members of a vectorized rule get it on a stand-in parameter;
        # Adafactor and Muon members on their own rows, which their optimizer steps.
        self._schedules = [
            build_optimizer(self._own[row] if row in self._own else [torch.zeros(1, requires_grad=True)], config)
            for row, config in enumerate(self.configs)
        ]
        for block in self._blocks:
            if block.rule == "torch":
                block.members = [self._schedules[row][0] for row in range(block.start, block.stop)]
        self._set_learning_rates()
        self.step = 0
        self._forward = stacked_forward(self.base, exact=self.exact)

    # -- layout ---------------------------------------------------------------------------

    def _bind(self) -> None:
        """Leaf views into theta (the parameters) whose .grad are views into grad."""
        self.params: dict[str, torch.Tensor] = {}
        grads = self.layout.views(self.grad)
        for name, view in self.layout.views(self.theta).items():
            view.requires_grad_(True)
            view.grad = grads[name]
            self.params[name] = view
        # Members stepped by torch's own class: their parameters as the model's shapes.
        self._own: dict[int, list[torch.Tensor]] = {}
        for block in self._blocks:
            if block.rule == "torch":
                for row in range(block.start, block.stop):
                    own = self.layout.member_views(self.theta, row)
                    for p, g in zip(own, self.layout.member_views(self.grad, row)):
                        p.grad = g
                    self._own[row] = own

    def _make_blocks(self) -> list[updates.Block]:
        blocks: list[updates.Block] = []
        start = 0
        while start < len(self.configs):
            stop = start
            while stop < len(self.configs) and self.kinds[stop] == self.kinds[start]:
                stop += 1
            optimizers = [c["optimizer"] for c in self.configs[start:stop]]
            blocks.append(updates.make_block(self.kinds[start], start, optimizers, self.exact, self.device))
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
        old_own = {r: self._own[r] for r in rows if r in self._own}
        self.theta = self.theta.index_select(0, index)
        self.grad = torch.zeros_like(self.theta)
        self.members = [self.members[r] for r in rows]
        self.configs = [self.configs[r] for r in rows]
        self.kinds = [self.kinds[r] for r in rows]
        self._schedules = [self._schedules[r] for r in rows]
        self.lrs = [self.lrs[r] for r in rows]
        survivors: list[updates.Block] = []
        start = 0
        for block in blocks:
            mine = kept_in[id(block)]
            if not mine:
                continue
            block.select(torch.tensor([r - block.start for r in mine], device=self.device), start)
            start += len(mine)
            survivors.append(block)
        self._blocks = survivors
        self._bind()
        for new_row, old_row in enumerate(rows):
            if old_row in old_own:
                _move(self._schedules[new_row][0], old_own[old_row], self._own[new_row])

    def parameters(self) -> torch.Tensor:
        """Every member's parameters, [K, n_params], in `model.parameters()` order."""
        return self.layout.unpadded(self.theta.detach())

    # -- training ---------------------------------------------------------------------------

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self._forward(self.params, x).float()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One batch for every member; returns the members' losses [K] (not synchronised)."""
        self.grad.zero_()
        if self.exact:
            # Each member's loss as the reference engine computes it, value and gradient.
            outputs = member_outputs(self.base, self.params, x)
            losses = torch.stack([training_loss(o.float(), y, self.data.loss) for o in outputs])
        else:
            losses = member_losses(self._outputs(x), y, self.data.loss)
        losses.sum().backward()
        with torch.no_grad():
            self.step += 1
            for block in self._blocks:
                rows_ = slice(block.start, block.stop)
                rules.step(block, self.theta[rows_], self.grad[rows_], self.step)
        return losses.detach()

    def end_epoch(self, values: Sequence[float]) -> None:
        """Step every member's schedule; reduce-on-plateau with the member's own metric."""
        for (optimizer, scheduler), value in zip(self._schedules, values):
            if optimizer.param_groups[0]["params"][0].grad is None:
                optimizer.step()  # a no-op on the stand-in; keeps torch's call-order check quiet
            if is_plateau(scheduler):
                scheduler.step(value)
            else:
                scheduler.step()
        self._set_learning_rates()

    def evaluate(self, metric: str) -> list[float]:
        if self.exact:  # member by member, in the reference engine's chunks
            return [
                validation_metric(member_forward(self.base, self.params, row), self.data, metric, members=1)[0]
                for row in range(self.theta.shape[0])
            ]
        return validation_metric(self._outputs, self.data, metric, members=self.theta.shape[0], stacked=True)


def _move(optimizer: torch.optim.Optimizer, old: list[torch.Tensor], new: list[torch.Tensor]) -> None:
    """Point an optimizer at new views of its parameters, keeping its state."""
    moved = {id(o): n for o, n in zip(old, new)}
    for group in optimizer.param_groups:
        group["params"] = [moved[id(p)] for p in group["params"]]
    for o, n in zip(old, new):
        if o in optimizer.state:
            optimizer.state[n] = optimizer.state.pop(o)


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
    keep_parameters: bool = False,
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
        train_losses = [t / data.n_train for t in total.tolist()]  # as the reference divides
        values = cohort.evaluate(metric)
        cohort.end_epoch(values)
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
        last = epoch + 1 == int(config["epochs"])
        final = cohort.parameters().cpu() if keep_parameters else None
        for row, member in enumerate(cohort.members):
            if member in stopped:
                results[member].pruned = True  # type: ignore[union-attr]
            elif member in records and not last:
                keep.append(row)
                continue
            if final is not None and member in records:
                results[member].parameters = final[row]  # type: ignore[union-attr]
        if not keep:
            break
        if len(keep) < len(cohort.members):
            cohort.keep(keep)
    return results
