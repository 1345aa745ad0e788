"""Reading a trial config's tables, with an error that names the missing one."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError


def table(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    table = config.get(key) if isinstance(config, Mapping) else None
    if not isinstance(table, Mapping):
        raise ConfigError(f"config.{key}: must be a table with a 'name', got {table!r}")
    return table
