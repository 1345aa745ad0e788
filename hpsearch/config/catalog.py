"""The optimizers and learning-rate schedules hpsearch searches over.

Plain data shared by the study-file validator, the search space, the optimizer builder and
the cohort engine, so that "which arguments does RMSprop take" and "what is Adagrad's
default eps" are answered in one place. Nothing here imports torch or optuna.
"""

from typing import Any, Mapping

# Optimizer name -> the search-space keys it takes. The trial config turns these into the
# constructor arguments of the torch.optim class (beta1/beta2 become `betas`).
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "weight_decay"),
    "momentum": ("lr", "momentum", "nesterov", "weight_decay"),
    "adagrad": ("lr", "eps", "weight_decay"),
    "rmsprop": ("lr", "alpha", "eps", "weight_decay"),
    "adam": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("lr", "beta1", "beta2", "eps", "weight_decay"),
}
OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZER_KEYS)

# torch.optim's own defaults, used for keys a study leaves out so every trial config spells
# out every argument. `momentum` is the exception: torch defaults to 0, which would make the
# "momentum" optimizer plain SGD, so it gets the customary 0.9.
OPTIMIZER_DEFAULTS: dict[str, dict[str, float | bool]] = {
    "sgd": {"weight_decay": 0.0},
    "momentum": {"momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    "adagrad": {"eps": 1e-10, "weight_decay": 0.0},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}

# Schedule name -> the search-space keys it takes (besides warmup_epochs, which all take).
SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "step": ("step_size", "gamma"),
    "exponential": ("gamma",),
    "cosine": ("eta_min",),
}
SCHEDULES: tuple[str, ...] = tuple(SCHEDULE_KEYS)
SCHEDULE_DEFAULTS: dict[str, dict[str, float]] = {
    "step": {"gamma": 0.1},
    "exponential": {"gamma": 0.9},
    "cosine": {"eta_min": 0.0},
}


def default_step_size(epochs: int) -> int:
    """The step schedule's default period: three decays over the run."""
    return max(1, epochs // 3)


def keys_used_by(key: str) -> tuple[str, ...]:
    """The optimizers or schedules a search-space key applies to (empty: applies to all)."""
    if key in ("optimizer", "lr", "weight_decay", "batch_size", "schedule", "warmup_epochs"):
        return ()
    users = [name for name, keys in OPTIMIZER_KEYS.items() if key in keys]
    users += [name for name, keys in SCHEDULE_KEYS.items() if key in keys]
    return tuple(users)


def optimizer_argument(optimizer: Mapping[str, Any], key: str) -> Any:
    """An optimizer config's constructor argument `key`, or the default it has here.

    >>> optimizer_argument({"name": "adagrad", "lr": 0.1}, "eps")
    1e-10
    """
    if key in optimizer:
        return optimizer[key]
    defaults = OPTIMIZER_DEFAULTS[optimizer["name"]]
    if key == "betas":
        return [defaults["beta1"], defaults["beta2"]]
    return defaults[key]


def probe_config(batch_size: int | str = 128, seed: int = 0) -> dict[str, Any]:
    """The trial config hpsearch measures an engine with: the costliest member a space allows
    (Adam keeps two states per parameter) at learning rate 0, for one epoch."""
    adam = OPTIMIZER_DEFAULTS["adam"]
    return {
        "optimizer": {
            "name": "adam",
            "lr": 0.0,
            "betas": [adam["beta1"], adam["beta2"]],
            "eps": adam["eps"],
            "weight_decay": adam["weight_decay"],
        },
        "schedule": {"name": "constant", "warmup_epochs": 0},
        "batch_size": batch_size,
        "epochs": 1,
        "seed": seed,
        "data_seed": 0,
    }
