"""Trial config -> optimizer: the `optimizer` table is the class's constructor arguments.

`name` is one of the catalog's optimizers (torch.optim's classes, and hpsearch's own Muon,
Newton and conjugate gradient) or an import path, `package.module:Class`, of any
`torch.optim.Optimizer` subclass; the rest of the table is passed to its constructor.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping

import torch

from ..config.catalog import CATALOG, OPTIMIZERS, is_import_path
from ..config.factories import load_factory
from ..errors import ConfigError
from .trial_config import table

# Constructor arguments that are pairs (TOML and JSON write them as lists).
_PAIRS = ("betas", "etas", "step_sizes")


def optimizer_class(name: Any, where: str = "config.optimizer.name") -> type[torch.optim.Optimizer]:
    """The class an optimizer config names; a ConfigError for anything else."""
    if isinstance(name, str) and (name in CATALOG or is_import_path(name)):
        found = load_factory(CATALOG[name].cls if name in CATALOG else name, where, ConfigError)
        if isinstance(found, type) and issubclass(found, torch.optim.Optimizer):
            return found
        raise ConfigError(f"{where}: {name!r} is not a torch.optim.Optimizer subclass, got {found!r}")
    raise ConfigError(
        f"{where}: unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)} or 'package.module:Class'"
    )


def check_arguments(name: str, arguments: Iterable[str], where: str) -> None:
    """Refuse, before any trial runs, arguments a class named by import path does not take."""
    cls = optimizer_class(name, where)
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(arguments) - set(parameters) - {"name"})
    if unknown:
        takes = ", ".join(p for p in parameters if p not in ("self", "params"))
        raise ConfigError(f"{where}: {name} takes no argument {unknown[0]!r}; it takes {takes}")


def make_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], config: Mapping[str, Any]
) -> torch.optim.Optimizer:
    settings = dict(table(config, "optimizer"))
    name = settings.pop("name", None)
    cls = optimizer_class(name)
    for pair in _PAIRS:
        if isinstance(settings.get(pair), list):
            settings[pair] = tuple(settings[pair])
    try:
        return cls(params, **settings)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.optimizer: {name} rejects {settings}: {e}") from None


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `step` must be given a closure that re-evaluates the loss (L-BFGS, Newton, CG).

    Such an optimizer's `step(closure)` has no default for `closure`, as torch.optim.LBFGS.
    """
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty
