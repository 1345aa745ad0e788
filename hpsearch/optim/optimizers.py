"""Trial config -> `torch.optim` optimizer: the `optimizer` table is the class's arguments."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from ..errors import ConfigError
from .trial_config import table

_OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "momentum": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def make_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], config: Mapping[str, Any]
) -> torch.optim.Optimizer:
    settings = dict(table(config, "optimizer"))
    name = settings.pop("name", None)
    if name not in _OPTIMIZER_CLASSES:
        raise ConfigError(
            f"config.optimizer.name: unknown optimizer {name!r}; "
            f"use one of {', '.join(_OPTIMIZER_CLASSES)}"
        )
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    try:
        return _OPTIMIZER_CLASSES[name](params, **settings)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.optimizer: {name} rejects {settings}: {e}") from None
