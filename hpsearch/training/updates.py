"""The cohort's optimizer step: torch.optim's single-tensor update rules, vectorized over members.

Members are stacked by optimizer kind, so each kind's members are one contiguous `Block` of
rows of the `[K, P]` parameter and gradient tensors. Every hyperparameter is a `[n, 1]`
tensor, so the members of a block step together while each keeps its own learning rate,
betas, momentum, eps, alpha and weight decay.

torch's `x.add(y, alpha=s)` and `x.addcmul(a, b, value=s)` are fused multiply-adds (one
rounding); `torch.addcmul(x, s, y)` with `s` a [n, 1] tensor is the same operation row by
row, and `x.addcdiv(a, b, value=s)` is `x.addcdiv(s * a, b)`. Written so, every member's
update is bit-for-bit the one torch.optim makes on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from ..config.catalog import optimizer_argument

# The order members are stacked in: each kind's rows are contiguous.
KINDS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
# The optimizer state each kind keeps, one [n, P] tensor per name.
STATES = {
    "momentum": ("buf",),
    "nesterov": ("buf",),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
}


def kind_of(config: Mapping[str, Any]) -> str:
    """A trial config's update rule: its optimizer's name, or nesterov for Nesterov momentum."""
    optimizer = config["optimizer"]
    if optimizer["name"] == "momentum" and optimizer.get("nesterov"):
        return "nesterov"
    return str(optimizer["name"])


@dataclass
class Block:
    """The members of one optimizer kind: rows [start, stop) of the stacked tensors."""

    kind: str
    start: int
    stop: int
    hp: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, 1]
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, P]


def make_block(kind: str, start: int, optimizers: Sequence[Mapping[str, Any]], n_params: int, device: torch.device) -> Block:
    """The block for `optimizers` (the `optimizer` tables of its members, all of `kind`)."""
    block = Block(kind, start, start + len(optimizers))

    def column(key: str, dtype: torch.dtype = torch.float32, of: Callable[[Any], float] = float) -> torch.Tensor:
        values = [of(optimizer_argument(o, key)) for o in optimizers]
        return torch.tensor(values, dtype=dtype, device=device).unsqueeze(1)

    hp = block.hp
    hp["weight_decay"] = column("weight_decay")
    if kind in ("momentum", "nesterov"):
        hp["momentum"] = column("momentum")
    if kind in ("adagrad", "rmsprop", "adam", "adamw"):
        hp["eps"] = column("eps")
    if kind == "rmsprop":
        hp["alpha"] = column("alpha")
        hp["one_minus_alpha"] = column("alpha", of=lambda a: 1 - a)
    if kind in ("adam", "adamw"):
        hp["beta1"] = column("betas", torch.float64, lambda b: b[0])
        hp["beta2"] = column("betas", torch.float64, lambda b: b[1])
        hp["one_minus_beta1"] = column("betas", of=lambda b: 1 - b[0])
        hp["beta2_f32"] = column("betas", of=lambda b: b[1])
        hp["one_minus_beta2"] = column("betas", of=lambda b: 1 - b[1])
    for name in STATES.get(kind, ()):
        block.state[name] = torch.zeros((len(optimizers), n_params), device=device)
    return block


def set_learning_rates(block: Block, lrs: Sequence[float]) -> None:
    """The block's members' current learning rates (their schedulers' values)."""
    hp = block.hp
    hp["lr"] = torch.tensor(list(lrs), dtype=torch.float64, device=hp["weight_decay"].device).unsqueeze(1)
    hp["neg_lr"] = (-hp["lr"]).float()
    if block.kind == "adamw":
        # torch: param.mul_(1 - lr * weight_decay), computed in double precision
        hp["decay"] = (1 - hp["lr"] * hp["weight_decay"].double()).float()


def select(block: Block, local_rows: torch.Tensor, start: int) -> None:
    """Keep only the block's rows `local_rows` (positions within the block); it now starts at `start`."""
    block.hp = {k: v.index_select(0, local_rows) for k, v in block.hp.items()}
    block.state = {k: v.index_select(0, local_rows) for k, v in block.state.items()}
    block.start, block.stop = start, start + len(local_rows)


def step(block: Block, param: torch.Tensor, grad: torch.Tensor, step_number: int) -> None:
    """One optimizer step of the block's rows `param` [n, P] (in place), given `grad` [n, P]."""
    _RULES[block.kind](block, param, grad, step_number)


def _with_weight_decay(param: torch.Tensor, grad: torch.Tensor, block: Block) -> torch.Tensor:
    # torch: grad = grad.add(param, alpha=weight_decay), skipped when it is 0; 0 * param adds 0.
    return torch.addcmul(grad, block.hp["weight_decay"], param)


def _sgd(block: Block, param: torch.Tensor, grad: torch.Tensor, _: int) -> None:
    grad = _with_weight_decay(param, grad, block)
    param.addcmul_(block.hp["neg_lr"], grad)


def _momentum(block: Block, param: torch.Tensor, grad: torch.Tensor, _: int) -> None:
    grad = _with_weight_decay(param, grad, block)
    buf = block.state["buf"]
    mu = block.hp["momentum"]
    # torch starts the buffer as a copy of the first gradient; 0 * mu + grad is that copy.
    buf.mul_(mu).add_(grad)
    grad = torch.addcmul(grad, mu, buf) if block.kind == "nesterov" else buf
    param.addcmul_(block.hp["neg_lr"], grad)


def _adagrad(block: Block, param: torch.Tensor, grad: torch.Tensor, _: int) -> None:
    grad = _with_weight_decay(param, grad, block)
    state_sum = block.state["sum"]
    state_sum.addcmul_(grad, grad)
    std = state_sum.sqrt().add_(block.hp["eps"])
    param.addcdiv_(block.hp["neg_lr"] * grad, std)


def _rmsprop(block: Block, param: torch.Tensor, grad: torch.Tensor, _: int) -> None:
    grad = _with_weight_decay(param, grad, block)
    square_avg = block.state["square_avg"]
    square_avg.mul_(block.hp["alpha"]).addcmul_(block.hp["one_minus_alpha"] * grad, grad)
    avg = square_avg.sqrt().add_(block.hp["eps"])
    param.addcdiv_(block.hp["neg_lr"] * grad, avg)


def _adam(block: Block, param: torch.Tensor, grad: torch.Tensor, step_number: int) -> None:
    hp = block.hp
    if block.kind == "adamw":
        param.mul_(hp["decay"])
    else:
        grad = _with_weight_decay(param, grad, block)
    exp_avg, exp_avg_sq = block.state["exp_avg"], block.state["exp_avg_sq"]
    exp_avg.lerp_(grad, hp["one_minus_beta1"])
    exp_avg_sq.mul_(hp["beta2_f32"]).addcmul_(hp["one_minus_beta2"] * grad, grad)
    # Bias corrections in double precision, as torch computes them with Python floats.
    t = float(step_number)
    bias_correction1 = 1 - hp["beta1"] ** t
    bias_correction2_sqrt = (1 - hp["beta2"] ** t) ** 0.5
    neg_step_size = (-(hp["lr"] / bias_correction1)).float()
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.float()).add_(hp["eps"])
    param.addcdiv_(neg_step_size * exp_avg, denom)


_RULES: dict[str, Callable[[Block, torch.Tensor, torch.Tensor, int], None]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _momentum,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adam": _adam,
    "adamw": _adam,
}
