"""hpsearch: find the optimizer, learning rate, batch size and schedule to train a model.

Public API for other projects (neither imports optuna):

    from hpsearch import build_optimizer, load_config
    config = load_config("best.json")                 # written by `hpsearch export`
    optimizer, scheduler = build_optimizer(model.parameters(), config)
"""

from typing import Any

__all__ = ["build_optimizer", "load_config"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import hpsearch` (and the CLI's start) does not pay for torch.
    if name == "build_optimizer":
        from .optim import build_optimizer

        return build_optimizer
    if name == "load_config":
        from .config.bundle import load_config

        return load_config
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
