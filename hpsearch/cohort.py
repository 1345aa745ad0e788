"""Train K trial configs at once on one device, as one stacked model.

    results = train_cohort(make_model, data, configs, "accuracy", on_epoch=report)

Every member's parameters live in one `[K, P]` tensor (member k's are row k), and one
forward and one backward of the stacked model serve all members, with the dataset resident
on the device and every member seeing the same batches
(`stacked.py`). The optimizer step is vectorized: members are ordered by optimizer kind, each kind's members
are a contiguous block of rows, and every hyperparameter is a `[n, 1]` tensor, so members of
one kind step together while each keeps its own learning rate, betas, momentum, eps, alpha,
weight decay and schedule. The update formulas follow torch.optim's single-tensor code line
by line, and schedules come from the very torch schedulers `build_optimizer` makes, so a
member's numbers are the reference engine's numbers (tested, fp32 on the CPU).

Members whose pruner says stop, or whose loss turns NaN/inf, leave at the end of the epoch;
the remaining rows are compacted and the others never notice.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .data import Dataset, batch_order, resolve_batch_size
from .objective import (
    Diverged,
    Epoch,
    Interrupted,
    TrainResult,
    autocast,
    divergence,
    member_losses,
    summed_metric,
)
from .optim import build_optimizer
from .stacked import stacked_forward

# Row views of the [K, P] gradient buffer are strided; autograd warns, but accumulates into
# them in place, which is what lets one optimizer step cover every parameter tensor.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

# The order members are stacked in: each kind's rows are contiguous.
KINDS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
EVAL_CHUNK = 4096  # validation examples per vectorized forward pass


class NotVectorizable(Exception):
    """The model cannot be trained as a stacked cohort (in-place buffers, randomness, ...)."""


def kind_of(config: Mapping[str, Any]) -> str:
    optimizer = config["optimizer"]
    if optimizer["name"] == "momentum" and optimizer.get("nesterov"):
        return "nesterov"
    return str(optimizer["name"])


def cohort_key(config: Mapping[str, Any], n_train: int) -> tuple[int, int, int]:
    """Configs with equal keys can share a cohort: same batches, same number of epochs."""
    return (resolve_batch_size(config["batch_size"], n_train), int(config["epochs"]), int(config["data_seed"]))


@dataclass
class _Group:
    """The members of one optimizer kind: rows [start, stop) of the stacked tensors."""

    kind: str
    start: int
    stop: int
    hp: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, 1]
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, P]


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
        order = sorted(range(len(configs)), key=lambda i: KINDS.index(kind_of(configs[i])))
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
        self._groups = self._make_groups()
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

    def _make_groups(self) -> list[_Group]:
        groups: list[_Group] = []
        for row, config in enumerate(self.configs):
            kind = kind_of(config)
            if groups and groups[-1].kind == kind:
                groups[-1].stop = row + 1
            else:
                groups.append(_Group(kind, row, row + 1))
        for group in groups:
            rows = self.configs[group.start : group.stop]
            opt = [c["optimizer"] for c in rows]
            col = lambda values, dtype=torch.float32: torch.tensor(values, dtype=dtype, device=self.device).unsqueeze(1)  # noqa: E731
            wd = [float(o.get("weight_decay", 0.0)) for o in opt]
            group.hp["weight_decay"] = col(wd)
            if group.kind in ("momentum", "nesterov"):
                group.hp["momentum"] = col([float(o["momentum"]) for o in opt])
            if group.kind in ("adagrad", "rmsprop", "adam", "adamw"):
                group.hp["eps"] = col([float(o.get("eps", 1e-10 if group.kind == "adagrad" else 1e-8)) for o in opt])
            if group.kind == "rmsprop":
                alpha = [float(o.get("alpha", 0.99)) for o in opt]
                group.hp["alpha"] = col(alpha)
                group.hp["one_minus_alpha"] = col([1 - a for a in alpha])
            if group.kind in ("adam", "adamw"):
                b1 = [float(o["betas"][0]) for o in opt]
                b2 = [float(o["betas"][1]) for o in opt]
                group.hp["beta1"] = col(b1, torch.float64)
                group.hp["beta2"] = col(b2, torch.float64)
                group.hp["one_minus_beta1"] = col([1 - b for b in b1])
                group.hp["beta2_f32"] = col(b2)
                group.hp["one_minus_beta2"] = col([1 - b for b in b2])
            shape = (group.stop - group.start, self.theta.shape[1])
            states = {
                "momentum": ["buf"],
                "nesterov": ["buf"],
                "adagrad": ["sum"],
                "rmsprop": ["square_avg"],
                "adam": ["exp_avg", "exp_avg_sq"],
                "adamw": ["exp_avg", "exp_avg_sq"],
            }.get(group.kind, [])
            for name in states:
                group.state[name] = torch.zeros(shape, device=self.device)
        return groups

    def _set_learning_rates(self) -> None:
        lrs = [opt.param_groups[0]["lr"] for opt, _ in self._schedules]
        self.lrs = lrs
        for group in self._groups:
            rows = lrs[group.start : group.stop]
            group.hp["lr"] = torch.tensor(rows, dtype=torch.float64, device=self.device).unsqueeze(1)
            group.hp["neg_lr"] = (-group.hp["lr"]).float()
            if group.kind == "adamw":
                # torch: param.mul_(1 - lr * weight_decay), computed in double precision
                wd = group.hp["weight_decay"].double()
                group.hp["decay"] = (1 - group.hp["lr"] * wd).float()

    def keep(self, rows: list[int]) -> None:
        """Drop every member not in `rows` (positions in the current stack), in place."""
        index = torch.tensor(rows, device=self.device)
        groups = self._groups
        new_rows_of = {id(g): [r for r in rows if g.start <= r < g.stop] for g in groups}
        self.theta = self.theta.index_select(0, index)
        self.grad = torch.zeros_like(self.theta)
        self.members = [self.members[r] for r in rows]
        self.configs = [self.configs[r] for r in rows]
        self._schedules = [self._schedules[r] for r in rows]
        self.lrs = [self.lrs[r] for r in rows]
        survivors: list[_Group] = []
        start = 0
        for group in groups:
            mine = new_rows_of[id(group)]
            if not mine:
                continue
            local = torch.tensor([r - group.start for r in mine], device=self.device)
            group.hp = {k: v.index_select(0, local) for k, v in group.hp.items()}
            group.state = {k: v.index_select(0, local) for k, v in group.state.items()}
            group.start, group.stop = start, start + len(mine)
            start += len(mine)
            survivors.append(group)
        self._groups = survivors
        self._bind()

    # -- training ---------------------------------------------------------------------------

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self._forward(self.params, x).float()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One batch for every member; returns the members' losses [K] (not synchronised)."""
        self.grad.zero_()
        losses = member_losses(self._outputs(x), y, self.data.task, self.exact)
        losses.sum().backward()
        with torch.no_grad():
            self.step += 1
            for group in self._groups:
                _STEPS[group.kind](self, group)
        return losses.detach()

    def end_epoch(self) -> None:
        for optimizer, scheduler in self._schedules:
            optimizer.step()  # a no-op on the stand-in; keeps torch's call-order check quiet
            scheduler.step()
        self._set_learning_rates()

    @torch.no_grad()
    def evaluate(self, metric: str) -> list[float]:
        total = torch.zeros(self.theta.shape[0], dtype=torch.float64, device=self.device)
        x_val, y_val = self.data.x_val, self.data.y_val
        chunk = max(1, EVAL_CHUNK // max(1, self.theta.shape[0] // 64))
        for start in range(0, len(x_val), chunk):
            out = self._outputs(x_val[start : start + chunk])
            total += summed_metric(out, y_val[start : start + chunk], self.data.task, metric)
        return (total / len(x_val)).tolist()


# -- the vectorized update rules: torch.optim's single-tensor code, per block of rows --------
#
# torch's `x.add(y, alpha=s)` and `x.addcmul(a, b, value=s)` are fused multiply-adds (one
# rounding); `torch.addcmul(x, s, y)` with `s` a [n, 1] tensor is the same operation row by
# row, and `x.addcdiv(a, b, value=s)` is `x.addcdiv(s * a, b)`. Written so, every member's
# update is bit-for-bit the one torch.optim makes on the CPU.


def _rows(cohort: Cohort, group: _Group) -> tuple[torch.Tensor, torch.Tensor]:
    return cohort.theta[group.start : group.stop], cohort.grad[group.start : group.stop]


def _with_weight_decay(param: torch.Tensor, grad: torch.Tensor, group: _Group) -> torch.Tensor:
    # torch: grad = grad.add(param, alpha=weight_decay), skipped when it is 0; 0 * param adds 0.
    return torch.addcmul(grad, group.hp["weight_decay"], param)


def _sgd(cohort: Cohort, group: _Group) -> None:
    param, grad = _rows(cohort, group)
    grad = _with_weight_decay(param, grad, group)
    param.addcmul_(group.hp["neg_lr"], grad)


def _momentum(cohort: Cohort, group: _Group) -> None:
    param, grad = _rows(cohort, group)
    grad = _with_weight_decay(param, grad, group)
    buf = group.state["buf"]
    mu = group.hp["momentum"]
    # torch starts the buffer as a copy of the first gradient; 0 * mu + grad is that copy.
    buf.mul_(mu).add_(grad)
    grad = torch.addcmul(grad, mu, buf) if group.kind == "nesterov" else buf
    param.addcmul_(group.hp["neg_lr"], grad)


def _adagrad(cohort: Cohort, group: _Group) -> None:
    param, grad = _rows(cohort, group)
    grad = _with_weight_decay(param, grad, group)
    state_sum = group.state["sum"]
    state_sum.addcmul_(grad, grad)
    std = state_sum.sqrt().add_(group.hp["eps"])
    param.addcdiv_(group.hp["neg_lr"] * grad, std)


def _rmsprop(cohort: Cohort, group: _Group) -> None:
    param, grad = _rows(cohort, group)
    grad = _with_weight_decay(param, grad, group)
    square_avg = group.state["square_avg"]
    square_avg.mul_(group.hp["alpha"]).addcmul_(group.hp["one_minus_alpha"] * grad, grad)
    avg = square_avg.sqrt().add_(group.hp["eps"])
    param.addcdiv_(group.hp["neg_lr"] * grad, avg)


def _adam(cohort: Cohort, group: _Group) -> None:
    param, grad = _rows(cohort, group)
    hp = group.hp
    if group.kind == "adamw":
        param.mul_(hp["decay"])
    else:
        grad = _with_weight_decay(param, grad, group)
    exp_avg, exp_avg_sq = group.state["exp_avg"], group.state["exp_avg_sq"]
    exp_avg.lerp_(grad, hp["one_minus_beta1"])
    exp_avg_sq.mul_(hp["beta2_f32"]).addcmul_(hp["one_minus_beta2"] * grad, grad)
    # Bias corrections in double precision, as torch computes them with Python floats.
    step = float(cohort.step)
    bias_correction1 = 1 - hp["beta1"] ** step
    bias_correction2_sqrt = (1 - hp["beta2"] ** step) ** 0.5
    neg_step_size = (-(hp["lr"] / bias_correction1)).float()
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.float()).add_(hp["eps"])
    param.addcdiv_(neg_step_size * exp_avg, denom)


_STEPS: dict[str, Callable[[Cohort, _Group], None]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _momentum,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adam": _adam,
    "adamw": _adam,
}


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


def check_vectorizable(make_model: Callable[[], nn.Module], data: Dataset) -> str | None:
    """None when the model trains as a cohort; else the reason it cannot."""
    probe = {"optimizer": {"name": "sgd", "lr": 0.0, "weight_decay": 0.0}, "schedule": {"name": "constant"}, "batch_size": 2, "epochs": 1, "seed": 0, "data_seed": 0}
    try:
        cohort = Cohort(make_model, data, [probe, dict(probe, seed=1)])
        cohort.train_step(data.x_train[:2], data.y_train[:2])
    except NotVectorizable as e:
        return str(e)
    except Exception as e:  # vmap refuses: in-place updates, randomness, data-dependent flow
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def seconds_per_member_step(make_model: Callable[[], nn.Module], data: Dataset, members: int, batch_size: int, repeats: int = 3) -> float:
    """How long one training step takes per member of a cohort of `members` (after a warm-up)."""
    probe = {"optimizer": {"name": "adam", "lr": 0.0, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}, "schedule": {"name": "constant"}, "batch_size": batch_size, "epochs": 1, "seed": 0, "data_seed": 0}
    cohort = Cohort(make_model, data, [dict(probe, seed=i) for i in range(members)])
    index = torch.arange(min(batch_size, data.n_train), device=cohort.device)
    x, y = data.x_train[index], data.y_train[index]
    cohort.train_step(x, y)
    _synchronize(cohort.device)
    start = time.perf_counter()
    for _ in range(repeats):
        cohort.train_step(x, y)
    _synchronize(cohort.device)
    return (time.perf_counter() - start) / (repeats * members)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def member_footprint(make_model: Callable[[], nn.Module], data: Dataset, config: Mapping[str, Any]) -> int:
    """Bytes of device memory one member needs (measured on a 2-member cohort, CUDA only)."""
    device = data.x_train.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    batch = resolve_batch_size(config["batch_size"], data.n_train)
    cohort = Cohort(make_model, data, [config, dict(config)])
    index = torch.arange(batch, device=device)
    cohort.train_step(data.x_train[index], data.y_train[index])
    cohort.evaluate("accuracy" if data.task == "classification" else "mse")
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del cohort
    return max(1, math.ceil(peak / 2))
