"""The cohort's optimizer step: torch.optim's single-tensor update rules, vectorized over members.

Members are stacked by update rule, so each rule's members are one contiguous `Block` of
rows of the `[K, P]` parameter and gradient tensors. A hyperparameter is a `[n, 1]` float32
column (torch casts a Python scalar to the parameter's dtype before it touches a tensor), so
the members of a block step together while each keeps its own values. What torch computes
in Python (bias corrections, Adagrad's decayed lr, NAdam's momentum schedule) is computed
per member in Python too on the CPU (`Block.scalar`), then cast once, as torch casts it.

torch's `x.add(y, alpha=s)` and `x.addcmul(a, b, value=s)` are fused multiply-adds (one
rounding); `torch.addcmul(x, s, y)` with `s` a [n, 1] tensor is the same operation row by
row, and `x.addcdiv(a, b, value=s)` is `x.addcdiv(s * a, b)`. Written so, every member's
update is bit-for-bit the one torch.optim makes on the CPU (tests/training/test_updates.py).

Adafactor and Muon are not element-wise (norms and matrix products per parameter tensor):
their blocks step each member with torch's own class, on views of the member's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from ..config.catalog import CATALOG, optimizer_argument

# The order members are stacked in: each rule's rows are contiguous ("torch": torch's class).
RULES = (
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adadelta", "adamax",
    "nadam", "radam", "asgd", "rprop", "torch",
)


def kind_of(config: Mapping[str, Any]) -> str:
    """A trial config's update rule and the variant of it (`rmsprop+centered+momentum`)."""
    optimizer = config["optimizer"]
    name = str(optimizer["name"])
    if name not in CATALOG or CATALOG[name].cohort == "alone":
        raise ValueError(f"optimizer {name} does not train in cohorts; train it with `train`")
    if CATALOG[name].cohort == "member":
        return "torch"
    arg = lambda key: optimizer_argument(optimizer, key)  # noqa: E731
    flags = []
    if name == "momentum" and arg("nesterov"):
        name = "nesterov"
    if name == "rmsprop":
        flags += ["centered"] * bool(arg("centered")) + ["momentum"] * (arg("momentum") > 0)
    if name in ("adam", "adamw"):
        flags += ["amsgrad"] * bool(arg("amsgrad"))
    if name in ("nadam", "radam"):
        flags += ["decoupled"] * bool(arg("decoupled_weight_decay"))
    return "+".join([name, *flags])


def order_key(kind: str) -> tuple[int, str]:
    return RULES.index(kind.split("+")[0]), kind


class _Member:
    """One member's hyperparameters as Python floats, for a formula torch evaluates in Python."""

    def __init__(self, values: dict[str, list[float]], i: int):
        self._values, self._i = values, i

    def __getattr__(self, name: str) -> float:
        return self._values[name][self._i]


class _Columns:
    """Every member's hyperparameters as float64 [n, 1] tensors (the batched path)."""

    def __init__(self, block: "Block"):
        self._block = block

    def __getattr__(self, name: str) -> torch.Tensor:
        block = self._block
        values = block.values[name]
        if isinstance(values, torch.Tensor):
            return values
        cached = block.cache.get(name)
        if cached is None or cached[0] is not values:  # rebuilt when the values are replaced
            cached = block.cache[name] = (values, torch.tensor(values, dtype=torch.float64, device=block.device).unsqueeze(1))
        return cached[1]


def maximum(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        like = a if isinstance(a, torch.Tensor) else b
        return torch.maximum(torch.as_tensor(a).to(like), torch.as_tensor(b).to(like))
    return max(a, b)


def where(condition: Any, a: Any, b: Any) -> Any:
    if isinstance(condition, torch.Tensor):
        return torch.where(condition, a, b)
    return a if condition else b


@dataclass
class Block:
    """The members of one update rule: rows [start, stop) of the stacked tensors."""

    kind: str
    start: int
    stop: int
    exact: bool
    values: dict[str, Any] = field(default_factory=dict)  # per member: Python floats (or a float64 column)
    hp: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, 1] float32 columns
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # [n, P] (or [n, 1]) tensors
    members: list[Any] = field(default_factory=list)  # "torch": each member's own optimizer
    device: torch.device = torch.device("cpu")
    cache: dict[str, Any] = field(default_factory=dict)  # float64 columns of `values`

    @property
    def rule(self) -> str:
        return self.kind.split("+")[0]

    def has(self, flag: str) -> bool:
        return flag in self.kind.split("+")[1:]

    def column(self, values: Sequence[float]) -> torch.Tensor:
        """Python values -> a float32 [n, 1] column, each rounded as torch rounds a scalar."""
        return torch.tensor(list(values), dtype=torch.float32, device=self.device).unsqueeze(1)

    def scalar(self, formula: Callable[[Any], Any]) -> torch.Tensor:
        """`formula` of each member's hyperparameters (`h.lr`, `h.beta1`, ...) as a float32 column.

        Exact: evaluated per member with Python floats, as torch.optim does. Otherwise once, on
        float64 columns (close, and one kernel for any number of members).
        """
        if self.exact:
            return self.column([formula(_Member(self.values, i)) for i in range(self.stop - self.start)])
        value = torch.as_tensor(formula(_Columns(self)), dtype=torch.float64, device=self.device)
        return value.expand(self.stop - self.start, 1).float()

    def select(self, rows: torch.Tensor, start: int) -> None:
        """Keep only the block's rows `rows` (positions within the block); it now starts at `start`."""
        kept = rows.tolist()
        self.values = {
            k: v.index_select(0, rows) if isinstance(v, torch.Tensor) else [v[i] for i in kept] for k, v in self.values.items()
        }
        self.hp = {k: v.index_select(0, rows) for k, v in self.hp.items()}
        self.state = {k: v.index_select(0, rows) for k, v in self.state.items()}
        self.members = [self.members[i] for i in kept] if self.members else []
        self.start, self.stop = start, start + len(kept)


# The hyperparameters each rule reads, as (column name, constructor argument, position).
_READS: dict[str, tuple[tuple[str, str, int | None], ...]] = {
    "sgd": (("weight_decay", "weight_decay", None),),
    "momentum": (("weight_decay", "weight_decay", None), ("momentum", "momentum", None), ("dampening", "dampening", None)),
    "adagrad": (("weight_decay", "weight_decay", None), ("eps", "eps", None), ("lr_decay", "lr_decay", None),
                ("initial_accumulator_value", "initial_accumulator_value", None)),
    "rmsprop": (("weight_decay", "weight_decay", None), ("alpha", "alpha", None), ("eps", "eps", None), ("momentum", "momentum", None)),
    "adam": (("weight_decay", "weight_decay", None), ("beta1", "betas", 0), ("beta2", "betas", 1), ("eps", "eps", None)),
    "adadelta": (("weight_decay", "weight_decay", None), ("rho", "rho", None), ("eps", "eps", None)),
    "nadam": (("weight_decay", "weight_decay", None), ("beta1", "betas", 0), ("beta2", "betas", 1), ("eps", "eps", None),
              ("momentum_decay", "momentum_decay", None)),
    "asgd": (("weight_decay", "weight_decay", None), ("lambd", "lambd", None), ("alpha", "alpha", None), ("t0", "t0", None)),
    "rprop": (("eta_minus", "etas", 0), ("eta_plus", "etas", 1), ("step_size_min", "step_sizes", 0), ("step_size_max", "step_sizes", 1)),
}
_READS["nesterov"] = _READS["momentum"]
_READS["adamw"] = _READS["adamax"] = _READS["adam"]
_READS["radam"] = _READS["adam"]


def make_block(kind: str, start: int, optimizers: Sequence[Mapping[str, Any]], exact: bool, device: torch.device) -> Block:
    """The block for `optimizers` (the `optimizer` tables of its members, all of `kind`)."""
    block = Block(kind, start, start + len(optimizers), exact, device=device)
    for name, argument, position in _READS.get(block.rule, ()):
        values = [optimizer_argument(o, argument) for o in optimizers]
        block.values[name] = [float(v if position is None else v[position]) for v in values]
    # Columns torch uses as Python scalars cast to float32 (one minus a value in double first).
    for name, values in list(block.values.items()):
        block.hp[name] = block.column(values)
    for name in ("alpha", "beta1", "beta2", "dampening", "rho"):
        if name in block.values:
            block.hp[f"one_minus_{name}"] = block.column([1 - v for v in block.values[name]])
    return block


def set_learning_rates(block: Block, lrs: Sequence[float]) -> None:
    """The block's members' current learning rates (their schedulers' values)."""
    block.values["lr"] = [float(lr) for lr in lrs]
    block.hp["neg_lr"] = block.column([-lr for lr in block.values["lr"]])
    if block.rule in ("adamw",) or block.has("decoupled"):
        # torch: param.mul_(1 - lr * weight_decay), both Python floats
        block.hp["decay"] = block.scalar(lambda h: 1 - h.lr * h.weight_decay)
