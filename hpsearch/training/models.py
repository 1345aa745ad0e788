"""The reference models, and user models named `package.module:factory`.

    make = model_factory(spec.model, data)   # a zero-argument builder
    torch.manual_seed(config["seed"]); model = make()

* `linreg`, `softmax` — one linear layer on the flattened input (regression / classes).
* `mlp` — in -> hidden (64) -> out, ReLU.
* `cnn` — three blocks of 3x3 convolution + ReLU + 2x2 max-pool with 16, 32 and 64 channels,
  then a linear layer; channels and image size come from the data (CIFAR-10 32x32x3,
  MNIST 28x28x1, digits 8x8x1).
* A user factory (a function or an `nn.Module` class) is called as
  `factory(input_shape, output_size, **model.options)`; a class or function that takes
  neither argument, as most model classes (pytorch/examples' MNIST `Net`), is called as
  `factory(**model.options)`. It must return an `nn.Module` mapping a batch of inputs to a
  batch of outputs. An exception raised while building is reported as what it is, with
  where it was raised in the user's code (`ModelError.trace` holds that traceback).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..config.factories import load_factory, raised_in_user_code, user_traceback
from ..errors import ModelError

if TYPE_CHECKING:
    from ..config.spec import ModelSection
    from .data import Dataset

CNN_CHANNELS = (16, 32, 64)


def linear_model(input_shape: tuple[int, ...], output_size: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(_numel(input_shape), output_size))


def mlp(input_shape: tuple[int, ...], output_size: int, hidden: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_numel(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, output_size),
    )


def cnn(input_shape: tuple[int, ...], output_size: int) -> nn.Module:
    if len(input_shape) != 3:
        raise ModelError(
            f"model.name: cnn needs images [channels, height, width], got inputs of shape "
            f"{list(input_shape)}; use mlp or softmax for this data"
        )
    channels, height, width = input_shape
    if min(height, width) < 8:
        raise ModelError(f"model.name: cnn needs images of at least 8x8, got {height}x{width}")
    layers: list[nn.Module] = []
    for out in CNN_CHANNELS:
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, height, width = out, height // 2, width // 2
    layers += [nn.Flatten(), nn.Linear(channels * height * width, output_size)]
    return nn.Sequential(*layers)


def model_factory(section: "ModelSection", data: "Dataset") -> Callable[[], nn.Module]:
    """A builder for the study's model on this data; call it under the trial's seed."""
    shape, out = data.input_shape, data.output_size
    if section.name in ("linreg", "softmax"):
        return lambda: linear_model(shape, out)
    if section.name == "mlp":
        return lambda: mlp(shape, out, section.hidden)
    if section.name == "cnn":
        cnn(shape, out)  # shape errors now, not inside a trial
        return lambda: cnn(shape, out)
    factory = load_factory(section.name, "model.name", ModelError)
    arguments = _arguments(factory, section, shape, out)

    def build() -> nn.Module:
        try:
            model = factory(*arguments, **section.options)
        except (Exception, SystemExit) as e:  # the user's code: report it as what it is, with where
            raise ModelError(raised_in_user_code(e, f"model.name: {section.name}"), trace=user_traceback(e)) from None
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"model.name: {section.name} must return a torch.nn.Module, "
                f"got {type(model).__name__}"
            )
        return model

    return build


def _arguments(factory: Callable[..., Any], section: "ModelSection", shape: tuple[int, ...], out: int) -> tuple[Any, ...]:
    """(input_shape, output_size) when the factory takes them, () when it takes neither."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: call it the documented way
        return (shape, out)
    for arguments in ((shape, out), ()):
        try:
            signature.bind(*arguments, **section.options)
            return arguments
        except TypeError:
            continue
    raise ModelError(
        f"model.name: {section.name} takes neither (input_shape, output_size, **model.options) nor "
        f"(**model.options); its signature is {signature}; change the factory or model.options"
    )


def _numel(shape: tuple[int, ...]) -> int:
    return int(torch.Size(shape).numel())
