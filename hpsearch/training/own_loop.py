"""A study's own training loop: `[train] function = "mypkg.train:run"`.

    def run(config, *, device, report, **options):          # options: [train] options
        model = Net().to(device)                             # torch is seeded with config["seed"]
        optimizer, scheduler = hpsearch.build_optimizer(model.parameters(), config)
        for epoch in range(config["epochs"]):
            ...                                              # any loss, augmentation, clipping, DataLoader
            scheduler.step()
            report(epoch, validation_accuracy)               # records it; raises Pruned to stop
        return validation_accuracy                           # the trial's value (None: the last reported)

hpsearch samples the config, seeds torch with `config["seed"]` before the call, records
every `report`, asks the study's pruner after each, and stores the returned value; the loop
does the rest. A `report` that the pruner turns down raises `Pruned`: let it propagate (it
stops the loop; the trial ends PRUNED). A stop request (SIGTERM, Ctrl-C) ends the trial at its
next `report`. Such trials run one at a time per worker.
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from typing import Any, Callable, Mapping

import torch

from ..config.factories import load_factory
from ..config.spec import StudySpec, TrainSection
from ..errors import HpsearchError, SpecError
from .results import Diverged, Epoch, EpochCallback, Interrupted, TrainResult

Loop = Callable[..., Any]


class Pruned(Exception):
    """Raised by `report` when the study's pruner stops the trial; let it propagate."""


def load_loop(train: TrainSection) -> Loop:
    """The study's training function, checked to take (config, *, device, report, **options)."""
    assert train.function is not None
    function = load_factory(train.function, "train.function", SpecError)
    try:
        inspect.signature(function).bind({}, device=None, report=None, **train.options)
    except TypeError as e:
        raise SpecError(
            f"train.function: {train.function} must take (config, *, device, report"
            f"{', ' + ', '.join(train.options) if train.options else ''}): {e}"
        ) from None
    except ValueError:  # no signature to read (a builtin): the call will tell
        pass
    return function


def refuse_cohorts(spec: StudySpec, engine: str) -> None:
    """A study with its own loop trains one trial at a time; asking for cohorts is an error."""
    if spec.train.function is not None and engine == "cohort":
        raise HpsearchError(
            f"--engine cohort: study {spec.study.name} trains with its own loop ({spec.train.function}), "
            "one trial at a time; drop --engine"
        )


def train_own(
    function: Loop,
    config: Mapping[str, Any],
    device: torch.device,
    *,
    options: Mapping[str, Any] | None = None,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run one trial through the study's own loop; the same result types as `train`."""
    result = TrainResult()
    stopped = {"pruned": False, "interrupted": False}

    def report(epoch: int, value: float) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise HpsearchError(f"report(epoch, value): epoch must be an integer >= 0, got {epoch!r}")
        if result.epochs and epoch <= result.epochs[-1].epoch:
            raise HpsearchError(f"report(epoch, value): epochs must increase, got {epoch} after {result.epochs[-1].epoch}")
        value = _number(value, "report(epoch, value): value")
        if not math.isfinite(value):
            raise Diverged(f"reported value became {value} in epoch {epoch}", list(result.epochs))
        record = Epoch(epoch=int(epoch), metric=value, train_loss=math.nan, lr=math.nan)
        result.epochs.append(record)
        result.metric = value
        if should_stop is not None and should_stop():
            stopped["interrupted"] = True
            raise Interrupted()
        if on_epoch is not None and not on_epoch(record):
            stopped["pruned"] = True
            raise Pruned(f"pruned after epoch {epoch}")

    torch.manual_seed(int(config["seed"]))
    start = time.perf_counter()
    try:
        returned = function(dict(config), device=device, report=report, **dict(options or {}))
    except Pruned:
        returned = None
    result.seconds = time.perf_counter() - start
    if stopped["interrupted"]:  # the loop swallowed the stop; it still stands
        raise Interrupted()
    if stopped["pruned"]:
        result.pruned = True
        return result
    if returned is None:
        if not result.epochs:
            raise HpsearchError("train.function returned None and reported nothing; return the trial's value or report it")
        return result
    result.metric = _number(returned, "train.function's return value")
    if not math.isfinite(result.metric):
        raise Diverged(f"train.function returned {result.metric}", list(result.epochs))
    return result


def _number(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HpsearchError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    return float(value)
