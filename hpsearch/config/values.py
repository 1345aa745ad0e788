"""How a search-space key's value is written, and the bounds each kind of key keeps.

In a study file's [space] a table `{ low, high, log, step }` is a range, an array is a
choice and a bare value is fixed. Each key's type here accepts all three (where a range
makes sense) and checks every value against its bound, so an error names the rule and the
value: `must be in (0, 1), got 1.5`. No optuna and no torch here.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Tag, model_validator

from .catalog import OPTIMIZERS, SCHEDULES


class Section(BaseModel):
    # strict: TOML already types its values, so "0.1" (a string) for lr is a mistake to
    # report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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


Positive = _param(float, FloatRange, "> 0", lambda v: v > 0)
NonNegative = _param(float, FloatRange, ">= 0", lambda v: v >= 0)
UnitInterval = _param(float, FloatRange, "in [0, 1)", lambda v: 0 <= v < 1)
OpenUnitInterval = _param(float, FloatRange, "in (0, 1)", lambda v: 0 < v < 1)
Decay = _param(float, FloatRange, "in (0, 1]", lambda v: 0 < v <= 1)
PositiveInt = _param(int, IntRange, ">= 1", lambda v: v >= 1)
NonNegativeInt = _param(int, IntRange, ">= 0", lambda v: v >= 0)
Flag = _param(bool, None, "true or false", _always)
OptimizerName = Literal[OPTIMIZERS]  # type: ignore[valid-type]
ScheduleName = Literal[SCHEDULES]  # type: ignore[valid-type]
OptimizerChoice = _param(OptimizerName, None, "an optimizer", _always)
ScheduleChoice = _param(ScheduleName, None, "a schedule", _always)


def _batch_value(value: int | str) -> int | str:
    if isinstance(value, str) and value != "full":
        raise ValueError(f'must be an integer >= 1 or "full", got {value!r}')
    return value


BatchSizeValue = Annotated[Union[int, str], AfterValidator(_batch_value)]
BatchSize = _param(
    BatchSizeValue, IntRange, '>= 1 or "full"', lambda v: v == "full" or v >= 1
)


