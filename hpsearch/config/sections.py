"""The [data] and [train] sections of a study file: what trains on what, and how.

    [data]  name, dir, validation_fraction, test_fraction, limit, split_seed, standardize, options
    [train] epochs, batch_size, seed, loss, loss_options, function, options

Rules between sections (a loss against the metric, train.function against [model]) are in
`spec.py`. No optuna and no torch here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from .factories import FACTORY_PATTERN, check_name
from .values import BatchSizeValue, Section

DATASETS = (
    "digits",
    "linear",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "synthetic-mnist",
    "synthetic-cifar10",
)
REGRESSION_DATASETS = ("linear",)
# [train] loss -> the task it fits; a "package.module:function" loss fits either.
LOSS_TASKS = {"cross-entropy": "classification", "nll": "classification", "mse": "regression", "huber": "regression", "smooth-l1": "regression"}
DEFAULT_LOSS = {"classification": "cross-entropy", "regression": "mse"}
LOSS_OPTIONS = {"cross-entropy": ("label_smoothing",), "nll": (), "mse": (), "huber": ("delta",), "smooth-l1": ("beta",)}
SPLIT_SEED = 20_240_601  # the validation split never changes between runs or trials


class DataSection(Section):
    name: str = "digits"
    dir: str | None = None  # where mnist / fashion-mnist / cifar10 files are
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    test_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None  # held out, scored only by export --confirm
    limit: Annotated[int, Field(ge=10)] | None = None  # use at most this many examples
    split_seed: int = SPLIT_SEED  # the permutation the split (and limit) cut
    standardize: bool = True  # images [N, C, H, W]: per channel, with training-set statistics
    options: dict[str, Any] = {}  # keyword arguments for a `module:factory` dataset

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return check_name(name, DATASETS, "dataset")

    @model_validator(mode="after")
    def _room(self) -> "DataSection":
        held_out = self.validation_fraction + (self.test_fraction or 0)
        if held_out >= 1:
            raise ValueError(
                f"data.test_fraction: validation_fraction + test_fraction must be < 1 to leave "
                f"training examples, got {self.validation_fraction:g} + {self.test_fraction:g}"
            )
        return self


class TrainSection(Section):
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: BatchSizeValue | None = None  # default 128, or searched in [space]
    seed: int = 0  # data order; each trial's init seed derives from it and the trial number
    loss: str | None = None  # cross-entropy | nll | mse | huber | smooth-l1 | "package.module:function"
    loss_options: dict[str, Any] = {}  # keyword arguments of the loss
    function: str | None = None  # "package.module:function": the study's own training loop
    options: dict[str, Any] = {}  # keyword arguments for train.function

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, loss: str | None) -> str | None:
        return None if loss is None else check_name(loss, tuple(LOSS_TASKS), "loss")

    @field_validator("function")
    @classmethod
    def _importable(cls, function: str | None) -> str | None:
        if function is not None and not FACTORY_PATTERN.match(function):
            raise ValueError(f"train.function: expected 'package.module:function', got {function!r}")
        return function

    @model_validator(mode="after")
    def _options(self) -> "TrainSection":
        if self.loss in LOSS_OPTIONS:
            unknown = sorted(set(self.loss_options) - set(LOSS_OPTIONS[self.loss]))
            if unknown:
                takes = ", ".join(LOSS_OPTIONS[self.loss]) or "no options"
                raise ValueError(f"train.loss_options: {self.loss} takes {takes}, got {', '.join(unknown)}")
        elif self.loss is None and self.loss_options:
            raise ValueError("train.loss_options: set train.loss too; the options belong to the loss it names")
        if self.function is None and self.options:
            raise ValueError("train.options: keyword arguments for train.function, which is not set")
        if self.function is not None and self.loss is not None:
            raise ValueError("train.loss: train.function computes its own loss; remove train.loss")
        return self
