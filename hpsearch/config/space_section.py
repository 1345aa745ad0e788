"""The [space] section of a study file: flat keys, and a table per optimizer.

    [space]
    optimizer = ["sgd", "adam", "mypkg.optim:Lion"]
    lr = { low = 1e-4, high = 1.0, log = true }   # every optimizer without an lr of its own
    beta1 = { low = 0.8, high = 0.99 }            # every optimizer that takes beta1

    [space.optimizers.adam]
    lr = { low = 1e-5, high = 1e-2, log = true }  # adam's own range
    amsgrad = [false, true]

    [space.optimizers."mypkg.optim:Lion"]         # a class hpsearch does not know
    beta1 = { low = 0.85, high = 0.95 }           # its constructor arguments (beta1/beta2: betas)

A flat key reaches every listed optimizer that takes it (the catalog says which); a key in an
optimizer's table is that optimizer's alone and wins over the flat one. The fields of the
flat section come from the catalog, so a new optimizer's keys need no code here.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError, create_model, field_validator, model_validator

from .catalog import CATALOG, SCHEDULE_CATALOG, flat_keys, is_import_path, keys_used_by
from .values import (
    RULES,
    BatchSize,
    NonNegativeInt,
    OptimizerChoice,
    Range,
    ScheduleChoice,
    Section,
    any_value,
    fmt,
    values_of,
)

_KWARG = re.compile(r"^[A-Za-z_]\w*$")


def table_name(name: str) -> str:
    """How an optimizer's table is written in a study file: adam, or "mypkg.optim:Lion"."""
    return f'"{name}"' if is_import_path(name) else name


def _table_model(name: str) -> type[Section]:
    fields: dict[str, Any] = {key.name: (RULES[key.rule] | None, None) for key in CATALOG[name].keys}
    return create_model(f"{name} table", __base__=Section, **fields)


_TABLES = {name: _table_model(name) for name in CATALOG}


def _check_table(name: str, table: Any) -> dict[str, Any]:
    where = f"space.optimizers.{table_name(name)}"
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table of keys, got {fmt(table)}")
    if name in CATALOG:
        model = _TABLES[name]
        try:
            checked = model.model_validate(table)
        except ValidationError as e:
            error = e.errors()[0]
            key = next((p for p in error["loc"] if isinstance(p, str) and p in table), None)
            if error["type"] == "extra_forbidden":
                raise ValueError(f"{where}.{error['loc'][0]}: unknown key; {name} takes {', '.join(model.model_fields)}") from None
            msg = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] != "value_error":
                msg = f"{msg[0].lower()}{msg[1:]}, got {fmt(error.get('input'))}"
            raise ValueError(f"{where}.{key}: {msg}") from None
        return {key: getattr(checked, key) for key in table}
    if not is_import_path(name):
        raise ValueError(
            f"{where}: unknown optimizer {name!r}; use one of {', '.join(CATALOG)} or 'package.module:Class'"
        )
    for key in table:
        if not _KWARG.match(key) or key in ("params", "name"):
            raise ValueError(f"{where}.{key}: must name a keyword argument of the class, got {key!r}")
    return {key: any_value(value, f"{where}.{key}") for key, value in table.items()}


class _SpaceChecks(Section):
    @field_validator("optimizers", check_fields=False)
    @classmethod
    def _tables(cls, tables: dict[str, Any]) -> dict[str, Any]:
        return {name: _check_table(name, table) for name, table in tables.items()}

    @model_validator(mode="after")
    def _used(self) -> "_SpaceChecks":
        optimizers = values_of(self.optimizer)  # type: ignore[attr-defined]
        tables = self.optimizers  # type: ignore[attr-defined]
        for name in tables:
            if name not in optimizers:
                raise ValueError(
                    f"space.optimizers.{table_name(name)}: {name} is not in space.optimizer; "
                    "add it there or remove the table"
                )
        if self.lr is None:  # type: ignore[attr-defined]
            missing = [o for o in optimizers if "lr" not in tables.get(o, {})]
            if missing:
                raise ValueError(
                    f"space.lr: required key is missing; set it here or in the table of each "
                    f"optimizer (none for {', '.join(missing)})"
                )
        chosen = set(optimizers) | set(values_of(self.schedule))  # type: ignore[attr-defined]
        for key in sorted(self.model_fields_set):
            users = keys_used_by(key)
            if users and getattr(self, key) is not None and not chosen & set(users):
                raise ValueError(
                    f"space.{key}: applies only to {', '.join(users)}, none of which is in "
                    f"space.optimizer or space.schedule; remove the key or add one of them"
                )
        return self

    def ranged(self) -> str | None:
        """The first key searched over a range (the grid sampler needs lists), or None."""
        for key in type(self).model_fields:
            if isinstance(getattr(self, key), Range):
                return f"space.{key}"
        for name, table in self.optimizers.items():  # type: ignore[attr-defined]
            for key, value in table.items():
                if isinstance(value, Range):
                    return f"space.optimizers.{table_name(name)}.{key}"
        return None


def _fields() -> dict[str, Any]:
    keys = flat_keys()
    optimizer = [k for k in keys if k not in {key.name for s in SCHEDULE_CATALOG.values() for key in s.keys}]
    fields: dict[str, Any] = {"optimizer": (OptimizerChoice, ...), "lr": (RULES["positive"] | None, None)}
    fields.update({k: (RULES[keys[k]] | None, None) for k in optimizer})
    fields["batch_size"] = (BatchSize | None, None)
    fields["schedule"] = (ScheduleChoice, "constant")
    fields.update({k: (RULES[keys[k]] | None, None) for k in keys if k not in optimizer})
    fields["warmup_epochs"] = (NonNegativeInt, 0)
    fields["optimizers"] = (dict[str, Any], {})
    return fields


Space = create_model("Space", __base__=_SpaceChecks, **_fields())
