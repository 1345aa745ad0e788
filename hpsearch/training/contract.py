"""What a study's model, data and loss must satisfy before any trial trains.

    checked = check_model(make_model, data, "mymodels:Net")

One forward and one backward step on the first training examples: the model builds (an
exception in its constructor is reported as what it is, with where in the user's code), its
outputs fit the task (`[N, C]` scores for classification, exactly the targets' shape `[N, T]`
or `[N]` for one target in regression; a shape that would broadcast is an error, not a
loss), `nll` gets log-probabilities, the loss is a finite scalar and reaches the parameters.
`hpsearch check`, the launcher (before it writes anything) and every worker (before it asks
for a trial) run it, so a broken model never fills a study with failed trials.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config.factories import raised_in_user_code, user_traceback
from ..config.spec import StudySpec
from ..errors import ModelError
from .data import Dataset, load_study_data
from .losses import matched, training_loss
from .models import model_factory
from .own_loop import load_loop, refuse_cohorts

PROBE_EXAMPLES = 8  # the first training examples the check runs on


@dataclass(frozen=True)
class ModelCheck:
    """What one forward and backward step showed."""

    parameters: int
    output_shape: tuple[int, ...]  # for PROBE_EXAMPLES examples (or fewer)
    loss: float
    seconds: float  # building the model and the step


def check_trainable(spec: StudySpec, data_dir: str | None = None, engine: str = "auto") -> None:
    """Everything a launch checks before it writes anything: the study's own loop imports
    and takes its arguments, or its data loads and its model takes a step (on the CPU)."""
    if spec.train.function is not None:
        refuse_cohorts(spec, engine)
        load_loop(spec.train)
        return
    assert spec.model is not None
    data = load_study_data(spec, data_dir)
    check_model(model_factory(spec.model, data), data, spec.model.name)


def check_model(make_model: Callable[[], nn.Module], data: Dataset, name: str) -> ModelCheck:
    """Build the model and run one training step on the first examples; a ModelError (or
    DataError) says what is wrong, naming `name` (the study's model.name)."""
    where = f"model.name: {name}"
    started = time.perf_counter()
    device = data.x_train.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leaves torch's generators as they were
        torch.manual_seed(0)
        model = make_model().to(device)
        model.train()
        x, y = data.x_train[:PROBE_EXAMPLES], data.y_train[:PROBE_EXAMPLES]
        try:
            outputs = model(x)
        except (Exception, SystemExit) as e:  # the user's forward
            raise ModelError(raised_in_user_code(e, f"{where}: its forward on a batch of shape {list(x.shape)}"), trace=user_traceback(e)) from None
        if not isinstance(outputs, torch.Tensor):
            raise ModelError(f"{where}: its forward must return a tensor, got {type(outputs).__name__}")
        try:
            fitted = matched(outputs, y, data.task)
        except ModelError as e:
            raise ModelError(f"{where}: {e}") from None
        _check_scores(fitted, data, where)
        try:
            loss = training_loss(outputs.float(), y, data.loss)
        except ModelError:
            raise
        except (Exception, SystemExit) as e:  # a user's loss function, or a torch loss refusing its inputs
            raise ModelError(raised_in_user_code(e, f"train.loss: {data.loss.name}"), trace=user_traceback(e)) from None
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = list(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ModelError(f"train.loss: {data.loss.name} must return the batch's mean loss as a scalar tensor, got {shape}")
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ModelError(f"{where}: the loss of the untrained model is {value} on the first {len(x)} examples; check the model's outputs")
        try:
            loss.backward()
        except (Exception, SystemExit) as e:
            raise ModelError(raised_in_user_code(e, f"{where}: the backward pass"), trace=user_traceback(e)) from None
        parameters = [p for p in model.parameters() if p.requires_grad]
        if not parameters or all(p.grad is None for p in parameters):
            raise ModelError(f"{where}: no parameter gets a gradient from the loss; the model has nothing to train")
    return ModelCheck(
        parameters=sum(p.numel() for p in model.parameters()),
        output_shape=tuple(outputs.shape),
        loss=value,
        seconds=time.perf_counter() - started,
    )


def _check_scores(outputs: torch.Tensor, data: Dataset, where: str) -> None:
    if data.task != "classification":
        return
    classes = int(data.num_classes or 0)
    if outputs.shape[1] < classes:
        raise ModelError(
            f"{where}: returns {outputs.shape[1]} scores per example, but the labels go up to "
            f"{classes - 1}; return [N, {classes}]"
        )
    if data.loss.name == "nll":
        total = torch.logsumexp(outputs.detach().double(), dim=1)
        if not torch.allclose(total, torch.zeros_like(total), atol=1e-3):
            raise ModelError(
                f"train.loss: nll takes log-probabilities, but the outputs of {where.split(': ', 1)[1]} are not "
                f"(their exp sums to {float(total[0].exp()):.4g}, not 1); end the model with log_softmax "
                "or use loss = \"cross-entropy\""
            )
