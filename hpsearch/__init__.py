"""hpsearch: find the optimizer, learning rate, batch size and schedule to train a model.

Every command is a function here, returning data (`hpsearch.api`):

    import hpsearch
    summary = hpsearch.launch("studies/quickstart.toml", storage="sqlite:///hpsearch.db", n_trials=50)
    hpsearch.best("quickstart")["config"]
    rows = hpsearch.trials("quickstart")                  # a list of dicts, one per trial
    bundle = hpsearch.export("quickstart", top=3, confirm=5, output="best.json")

And for other projects (none of these imports Optuna):

    from hpsearch import build_optimizer, load_config
    config = load_config("best.json")                 # written by `hpsearch export`
    optimizer, scheduler = build_optimizer(model.parameters(), config)

plus the pieces that reproduce a trial exactly: `split_indices`, `standardize`,
`BatchOrder` (a DataLoader batch sampler), `seed_trial` and `evaluate`.

Everything loads lazily, so `import hpsearch` costs nothing until a name is used.
"""

from importlib import import_module
from typing import Any

_API = (
    "launch", "worker", "check", "studies", "trials", "best", "export", "report", "compare",
    "dashboard", "db_check", "db_upgrade", "env", "bench", "launches", "stop", "delete",
)
_PUBLIC = {
    "build_optimizer": ".optim",
    "load_config": ".config.bundle",
    "read_bundle": ".config.bundle",
    "split_indices": ".training.splits",
    "Split": ".training.splits",
    "standardize": ".training.splits",
    "channel_stats": ".training.splits",
    "BatchOrder": ".training.splits",
    "batch_order": ".training.splits",
    "seed_trial": ".training.splits",
    "Pruned": ".training.own_loop",
    "HpsearchError": ".errors",
    **{name: ".api" for name in _API},
}
_RENAMED = {"evaluate": (".training.evaluation", "score")}

__all__ = sorted([*_PUBLIC, *_RENAMED])


def __getattr__(name: str) -> Any:
    # Lazy, so `import hpsearch` (and the CLI's start) pays for neither torch nor Optuna.
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(import_module(module, __name__), attr)
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
