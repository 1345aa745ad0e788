"""Config bundles: a study's best trial configs as a file any project can read.

    config = load_config("best.json")          # rank 0: the best trial's config
    optimizer, scheduler = build_optimizer(model.parameters(), config)

A bundle holds a format version, the study's metric and direction, the top-K trial configs
with their values and per-epoch curves (and, after `export --confirm S`, each config's
per-seed validation and test values with their mean and std), `training`: everything needed
to re-create a trial elsewhere (`recipe`: the model, the data with its limit, split fractions,
split seed and standardisation, the batch order and init seeds, the loss, the engine and
precision), and provenance (study, trial numbers, storage URL with the password masked,
study-file sha256, versions, time). JSON, YAML or TOML, by file extension or `--format`. This
module imports neither optuna nor torch.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .spec import DEFAULT_LOSS, StudySpec

FORMAT = "hpsearch-config-bundle"
VERSION = 1
FORMATS = ("json", "yaml", "toml")


def format_of(path: str | Path, fmt: str | None = None) -> str:
    if fmt is not None:
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"yml": "yaml"}.get(suffix, suffix if suffix in FORMATS else "json")


def dumps(bundle: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(bundle, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(bundle, sort_keys=False)
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps(without_none(bundle))
    raise ConfigError(f"--format: unknown format {fmt!r}; use json, yaml or toml")


def read_bundle(path: str | Path) -> dict[str, Any]:
    """A bundle (or a single trial config) read from a file and checked."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); save the file as UTF-8") from None
    fmt = format_of(path)
    try:
        if fmt == "yaml":
            import yaml

            data = yaml.safe_load(text)
        elif fmt == "toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as e:  # each parser has its own error type; all mean "not this format"
        raise ConfigError(f"{path}: not valid {fmt.upper()}: {str(e).splitlines()[0]}") from None
    if isinstance(data, dict) and "optimizer" in data and "schedule" in data:
        data = {"format": FORMAT, "version": VERSION, "configs": [{"config": data}]}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an hpsearch config bundle (written by `hpsearch export`)")
    if data.get("version") != VERSION:
        raise ConfigError(f"{path}: bundle format version {data.get('version')} is not {VERSION}; export it again")
    configs = data.get("configs")
    if not isinstance(configs, list) or not configs or not all(isinstance(c, dict) and isinstance(c.get("config"), dict) for c in configs):
        raise ConfigError(f"{path}: configs: expected a non-empty list of {{config = ...}} tables")
    return data


def load_config(path: str | Path, rank: int = 0) -> dict[str, Any]:
    """The trial config ranked `rank` (0 = best) in a bundle written by `hpsearch export`."""
    configs = read_bundle(path)["configs"]
    if not 0 <= rank < len(configs):
        raise ConfigError(f"{path}: rank {rank} is out of range; the bundle holds {len(configs)} configs (0..{len(configs) - 1})")
    return configs[rank]["config"]


def recipe(spec: StudySpec) -> dict[str, Any]:
    """How a study's trials were trained, in the words of the public functions that redo it."""
    train = spec.train
    if train.function is not None:
        return {
            "function": train.function,
            "options": dict(train.options),
            "epochs": train.epochs,
            "init_seed": "config.seed: torch.manual_seed(config['seed']) before train.function is called",
        }
    assert spec.model is not None
    data = spec.data
    task = spec.task
    loss = train.loss or (DEFAULT_LOSS[task] if task else "cross-entropy for class labels, mse for regression targets")
    return {
        "model": spec.model.model_dump(mode="json"),
        "data": {
            "name": data.name,
            "options": dict(data.options),
            "limit": data.limit,
            "validation_fraction": data.validation_fraction,
            "test_fraction": data.test_fraction,
            "split_seed": data.split_seed,
            "split": "hpsearch.split_indices(n, validation_fraction, test_fraction, limit, split_seed)",
            "standardize": data.standardize,
            "normalisation": (
                "images [N, C, H, W]: per channel, with the training split's mean and std (hpsearch.standardize)"
                if data.standardize else "none"
            ),
        },
        "batch_order": "hpsearch.BatchOrder(n_train, config['batch_size'], config['data_seed']): one permutation per epoch",
        "init_seed": "config.seed: hpsearch.seed_trial(config), i.e. torch.manual_seed, right before the model is built",
        "loss": loss,
        "loss_options": dict(train.loss_options),
        "epochs": train.epochs,
        "schedule_steps": "once per epoch, after its last batch",
    }


def without_none(value: Any) -> Any:
    """The value with every None-valued key left out (TOML has no null)."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value
