"""How a search-space key's value is written, and the bounds each kind of key keeps.

In a study file's [space] a table `{ low, high, log, step }` is a range, an array is a
choice and a bare value is fixed. Each key's type here accepts all three (where a range
makes sense) and checks every value against its bound, so an error names the rule and the
value: `must be in (0, 1), got 1.5`. No optuna and no torch here.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Tag, model_validator

from .catalog import OPTIMIZERS, SCHEDULES, WORDS, is_import_path


class Section(BaseModel):
    # strict: TOML already types its values, so "0.1" (a string) for lr is a mistake to
    # report, not a value to coerce. TOML also reads inf and nan, which no setting means:
    # an lr of inf trains nothing and fails every trial, so it is refused here.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Range(Section):
    @model_validator(mode="after")
    def _check(self) -> "Range":
        low, high = self.low, self.high  # type: ignore[attr-defined]
        if not low < high:
            raise ValueError(f"low must be < high, got low={low:g} high={high:g}")
        if self.log and low <= 0:  # type: ignore[attr-defined]
            raise ValueError(f"a log range needs low > 0, got low={low:g}")
        step = self.step  # type: ignore[attr-defined]
        if step is not None:
            if step <= 0:
                raise ValueError(f"step must be > 0, got step={step:g}")
            if self.log:  # type: ignore[attr-defined]
                raise ValueError(f"log and step cannot be combined, got log=true step={step:g}")
        return self


class FloatRange(Range):
    low: float
    high: float
    log: bool = False
    step: float | None = None


class IntRange(Range):
    low: int
    high: int
    log: bool = False
    step: int | None = None


def _shape(value: Any) -> str:
    # Called on the TOML value when validating and on the model's value when dumping.
    if isinstance(value, (dict, Range)):
        return "range"
    if isinstance(value, list):
        return "choice"
    return "fixed"


def values_of(value: Any) -> list[Any]:
    if isinstance(value, Range):
        return [value.low, value.high]
    if isinstance(value, list):
        return value
    return [value]


def _bounded(rule: str, ok: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("a choice needs at least one value, got []")
            if len({repr(v) for v in value}) != len(value):
                raise ValueError(f"choices must be distinct, got {value}")
        for v in values_of(value):
            if not ok(v):
                raise ValueError(f"must be {rule}, got {fmt(v)}")
        return value

    return check


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _param(scalar: Any, range_model: type | None, rule: str, ok: Callable[[Any], bool]) -> Any:
    members: list[Any] = [
        Annotated[list[scalar], Tag("choice")],
        Annotated[scalar, Tag("fixed")],
    ]
    if range_model is not None:
        members.insert(0, Annotated[range_model, Tag("range")])
    return Annotated[
        Union[tuple(members)], Discriminator(_shape), AfterValidator(_bounded(rule, ok))
    ]


def _always(_: Any) -> bool:
    return True


# The rules of the catalog's keys (config.catalog names them), each a value type.
RULES: dict[str, Any] = {
    "positive": _param(float, FloatRange, "> 0", lambda v: v > 0),
    "nonnegative": _param(float, FloatRange, ">= 0", lambda v: v >= 0),
    "nonpositive": _param(float, FloatRange, "<= 0", lambda v: v <= 0),
    "unit": _param(float, FloatRange, "in [0, 1)", lambda v: 0 <= v < 1),
    "open_unit": _param(float, FloatRange, "in (0, 1)", lambda v: 0 < v < 1),
    "closed_unit": _param(float, FloatRange, "in [0, 1]", lambda v: 0 <= v <= 1),
    "decay": _param(float, FloatRange, "in (0, 1]", lambda v: 0 < v <= 1),
    "above_one": _param(float, FloatRange, "> 1", lambda v: v > 1),
    "positive_int": _param(int, IntRange, ">= 1", lambda v: v >= 1),
    "nonnegative_int": _param(int, IntRange, ">= 0", lambda v: v >= 0),
    "flag": _param(bool, None, "true or false", _always),
    **{
        rule: _param(str, None, "one of " + ", ".join(repr(w) for w in words), lambda v, words=words: v in words)
        for rule, words in WORDS.items()
    },
}
Positive = RULES["positive"]
NonNegativeInt = RULES["nonnegative_int"]
ScheduleName = Literal[SCHEDULES]  # type: ignore[valid-type]
ScheduleChoice = _param(ScheduleName, None, "a schedule", _always)


def _optimizer_name(name: str) -> bool:
    return name in OPTIMIZERS or is_import_path(name)


OPTIMIZER_RULE = f"one of {', '.join(OPTIMIZERS)} or 'package.module:Class'"
OptimizerChoice = _param(str, None, OPTIMIZER_RULE, _optimizer_name)


def _batch_value(value: int | str) -> int | str:
    if (isinstance(value, str) and value != "full") or (isinstance(value, int) and value < 1):
        raise ValueError(f'must be an integer >= 1 or "full", got {value!r}')
    return value


BatchSizeValue = Annotated[Union[int, str], AfterValidator(_batch_value)]
BatchSize = _param(
    BatchSizeValue, IntRange, '>= 1 or "full"', lambda v: v == "full" or v >= 1
)

_SCALARS = (bool, int, float, str)


def any_value(value: Any, where: str) -> Any:
    """A value for a key of an optimizer class hpsearch does not know: a range, a choice of
    numbers, flags or words, or one of them fixed. `where` names the key in errors."""
    if isinstance(value, dict):
        model = FloatRange if any(isinstance(value.get(e), float) for e in ("low", "high", "step")) else IntRange
        try:
            return model.model_validate(value)
        except ValueError as e:
            first = e.errors()[0] if hasattr(e, "errors") else {"msg": str(e), "loc": ()}
            msg = str(first["msg"]).removeprefix("Value error, ")
            loc = ".".join(str(p) for p in first.get("loc", ()))
            got = f", got {fmt(first['input'])}" if first.get("type") == "finite_number" else ""
            raise ValueError(f"{where}{'.' + loc if loc else ''}: {msg[0].lower()}{msg[1:]}{got}") from None
    choices = value if isinstance(value, list) else [value]
    if not choices:
        raise ValueError(f"{where}: a choice needs at least one value, got []")
    for v in choices:
        if not isinstance(v, _SCALARS):
            raise ValueError(f"{where}: must be a number, flag or word (or a range or list of them), got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where}: input should be a finite number, got {fmt(v)}")
    if isinstance(value, list) and len({repr(v) for v in value}) != len(value):
        raise ValueError(f"{where}: choices must be distinct, got {value}")
    return value
