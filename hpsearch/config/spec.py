"""Read a study file (TOML) into a validated, frozen spec.

    study = load_study_file("studies/quickstart.toml")
    study.spec.space.lr        # FloatRange(low=0.0001, high=0.3, log=True, step=None)

Every rule a user can break is checked here, before anything touches a database, and every
error names the file, the key path, the rule and the value:

    studies/x.toml: space.lr: low must be < high, got low=0.1 high=0.001

In the search space a table `{low, high, log, step}` is a range, an array is a categorical
choice and a bare value is fixed. No optuna and no torch here.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..errors import SpecError
from .factories import check_name
from .sections import (  # noqa: F401  (DEFAULT_LOSS, SPLIT_SEED: part of what a spec means)
    DATASETS,
    DEFAULT_LOSS,
    LOSS_TASKS,
    REGRESSION_DATASETS,
    SPLIT_SEED,
    DataSection,
    TrainSection,
)
from .space_section import Space
from .values import Section, fmt, values_of

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc", "grid")
PRUNERS = ("none", "median", "successive-halving", "hyperband")
MODELS = ("linreg", "softmax", "mlp", "cnn")
# metric -> the direction it is optimized in
METRICS = {"accuracy": "maximize", "mse": "minimize", "loss": "minimize"}


class StudySection(Section):
    name: Annotated[str, Field(min_length=1, pattern=r"^[\w.\-]+$")]
    metric: Literal["accuracy", "mse", "loss"] | None = None
    direction: Literal["maximize", "minimize"] | None = None


class ModelSection(Section):
    name: str
    hidden: Annotated[int, Field(ge=1)] = 64  # MLP width
    options: dict[str, Any] = {}  # keyword arguments for a `module:factory` model

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return check_name(name, MODELS, "model")


class SearchSection(Section):
    n_trials: Annotated[int, Field(ge=1)] = 20  # the study's total, across launches
    timeout: Annotated[float, Field(gt=0)] | None = None  # seconds, per launch
    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    sampler_options: dict[str, Any] = {}  # keyword arguments of the Optuna sampler
    pruner: Literal[PRUNERS] = "none"  # type: ignore[valid-type]
    pruner_options: dict[str, Any] = {}  # keyword arguments of the Optuna pruner
    seed: int | None = None  # sampler seed
    heartbeat_interval: Annotated[int, Field(ge=1)] = 10  # seconds
    grace_period: Annotated[int, Field(ge=2)] | None = None  # seconds; default 6 heartbeats
    max_retry: Annotated[int, Field(ge=0)] = 3  # re-runs of a trial whose worker died

    @model_validator(mode="after")
    def _grace(self) -> "SearchSection":
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period must be > heartbeat_interval ({self.heartbeat_interval}), "
                f"got {self.grace_period}"
            )
        return self

    @property
    def grace_seconds(self) -> int:
        return self.grace_period or 6 * self.heartbeat_interval


class StudySpec(Section):
    study: StudySection
    model: ModelSection | None = None  # required unless train.function trains its own model
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    search: SearchSection = Field(default_factory=SearchSection)
    space: Space

    @model_validator(mode="after")
    def _consistent(self) -> "StudySpec":
        regression = self.data.name in REGRESSION_DATASETS
        metric = self.study.metric
        if metric == "accuracy" and regression:
            raise ValueError(
                f"study.metric: accuracy needs class labels, but data '{self.data.name}' is "
                f"a regression problem, got metric='accuracy'; use 'mse' or 'loss'"
            )
        if metric == "mse" and not regression and self.data.name in DATASETS:
            raise ValueError(
                f"study.metric: mse needs a regression problem, but data '{self.data.name}' "
                f"has class labels, got metric='mse'; use 'accuracy' or 'loss'"
            )
        direction = self.study.direction
        if direction is not None and direction != METRICS[self.metric]:
            raise ValueError(
                f"study.direction: {self.metric} is {METRICS[self.metric]}d, "
                f"got direction='{direction}'; remove the key or change study.metric"
            )
        if self.train.batch_size is not None and self.space.batch_size is not None:
            raise ValueError(
                "space.batch_size: set the batch size in [train] or in [space], not both"
            )
        warmup = max(values_of(self.space.warmup_epochs))
        if warmup >= self.train.epochs:
            raise ValueError(
                f"space.warmup_epochs: must be < train.epochs ({self.train.epochs}), "
                f"got {warmup}"
            )
        if self.search.sampler == "grid":
            ranged = self.space.ranged()
            if ranged:
                raise ValueError(
                    f"search.sampler: grid needs every space key to be a list or a fixed "
                    f"value, got a range for {ranged}; list its values instead"
                )
        return self

    @model_validator(mode="after")
    def _trainable(self) -> "StudySpec":
        """The rules between [model], [data], [train] and the metric."""
        if self.train.function is not None:
            if self.model is not None:
                raise ValueError("model: train.function builds its own model; remove [model] (pass settings in train.options)")
            if "data" in self.model_fields_set:
                raise ValueError("data: train.function loads its own data; remove [data] (pass settings in train.options)")
            if self.study.metric is None:
                raise ValueError(
                    "study.metric: say what train.function reports and returns: accuracy, mse or loss"
                )
            return self
        if self.model is None:
            raise ValueError("model: required section is missing (or set train.function to train with your own loop)")
        loss, task = self.train.loss, self.task
        if loss in LOSS_TASKS and task is not None and LOSS_TASKS[loss] != task:
            fits = " or ".join(n for n, t in LOSS_TASKS.items() if t == task)
            raise ValueError(
                f"train.loss: {loss} is a {LOSS_TASKS[loss]} loss, but {self._task_reason}; use {fits}"
            )
        return self

    @property
    def task(self) -> str | None:
        """classification or regression, when the metric, the data or the loss says which."""
        if self.study.metric == "accuracy" or (self.data.name in DATASETS and self.data.name not in REGRESSION_DATASETS):
            return "classification"
        if self.study.metric == "mse" or self.data.name in REGRESSION_DATASETS:
            return "regression"
        return None

    @property
    def _task_reason(self) -> str:
        if self.study.metric in ("accuracy", "mse"):
            return f"study.metric is {self.study.metric}"
        return f"data {self.data.name} has {'class labels' if self.task == 'classification' else 'regression targets'}"

    @property
    def trains(self) -> str:
        """What trains, in words: "model mlp on data digits" or "train.function pkg.mod:run"."""
        if self.train.function is not None:
            return f"train.function {self.train.function}"
        assert self.model is not None
        return f"model {self.model.name} on data {self.data.name}"

    @property
    def metric(self) -> str:
        """The validation metric: accuracy for classification, mse for regression."""
        if self.study.metric is not None:
            return self.study.metric
        return "mse" if self.data.name in REGRESSION_DATASETS else "accuracy"

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @property
    def batch_sizes(self) -> Any:
        """The batch-size entry of the space: searched, or the fixed training batch size."""
        if self.space.batch_size is not None:
            return self.space.batch_size
        return self.train.batch_size if self.train.batch_size is not None else 128

    def with_overrides(self, **search: Any) -> "StudySpec":
        """A copy with [search] keys replaced (command-line flags), validated again."""
        search = {k: v for k, v in search.items() if v is not None}
        if not search:
            return self
        data = self.model_dump(exclude_unset=True)
        data["search"] = {**data.get("search", {}), **search}
        return _validate(data, "command line")


@dataclass(frozen=True)
class StudyFile:
    """A study file as read: where it came from, its exact text, and the validated spec."""

    path: str
    text: str
    spec: StudySpec

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.spec.study.name


def load_study_file(path: str | Path) -> StudyFile:
    """Read and validate a study file; a SpecError names the file, key, rule and value."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file; check the path (studies/*.toml)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the study file: {e}") from None
    return parse_study_file(text, str(path), default_name=path.stem)


def parse_study_file(text: str, source: str, default_name: str | None = None) -> StudyFile:
    """Validate a study file's text; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML: {e}") from None
    if default_name is not None and isinstance(data.get("study", {}), dict):
        data.setdefault("study", {}).setdefault("name", default_name)
    return StudyFile(path=source, text=text, spec=_validate(data, source))


def _validate(data: dict[str, Any], source: str) -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        first = _describe(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{source}: {first}{more}") from None


_TAGS = {"range", "choice", "fixed", "function-after", "literal"}


def _describe(error: dict[str, Any]) -> str:
    loc = [p for p in error["loc"] if not (isinstance(p, str) and (p in _TAGS or "[" in p))]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    kind, msg, value = error["type"], error["msg"], error.get("input")
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{path}: {msg}" if path and not msg.startswith(path) else msg
    if kind == "extra_forbidden":
        allowed = _keys_at(loc[:-1])
        return f"{path}: unknown key; valid keys are {', '.join(allowed)}"
    if kind == "missing":
        return f"{path}: required key is missing"
    return f"{path}: {msg[0].lower()}{msg[1:]}, got {fmt(value) if not isinstance(value, (dict, list)) else value}"


def _keys_at(loc: list[Any]) -> list[str]:
    """The keys allowed in the table at `loc`, for 'unknown key' errors."""
    model: Any = StudySpec
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        model = _model_in(fields[part].annotation)
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or getattr(annotation, "__metadata__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_in(origin) if origin is not None and origin is not annotation else None
