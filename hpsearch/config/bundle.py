"""Config bundles: a study's best trial configs as a file any project can read.

    config = load_config("best.json")          # rank 0: the best trial's config
    optimizer, scheduler = build_optimizer(model.parameters(), config)

A bundle holds a format version, the study's metric and direction, the top-K trial configs
with their values, and provenance (study, trial numbers, storage URL with the password
masked, study-file sha256, versions, time). JSON, YAML or TOML, by file extension or
`--format`. This module imports neither optuna nor torch.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError

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


def without_none(value: Any) -> Any:
    """The value with every None-valued key left out (TOML has no null)."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value
