"""Measurements of a model before a search: can it train as a cohort, how fast is a step
each way, how much device memory does one member take.

All of them train the catalog's probe config (`probe_config`: Adam, the costliest member a
space allows, at learning rate 0), so they measure what a search will run.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..config.batches import resolve_batch_size
from ..config.catalog import probe_config
from ..errors import ModelError
from ..optim import build_optimizer
from .cohort import Cohort, NotVectorizable
from .data import Dataset
from .losses import training_loss


def check_vectorizable(make_model: Callable[[], nn.Module], data: Dataset) -> str | None:
    """None when the model trains as a cohort; else the reason it cannot, in words.

    Probed through the batched path (`vmap` refuses randomness and data-dependent control
    flow), even on the CPU, where members then train through the single model's forward.
    Errors in building the model or in its outputs (ModelError) are not cohort problems:
    they are raised, for the caller to report as what they are.
    """
    obstacle = cohort_obstacle(make_model())
    if obstacle is not None:
        return obstacle
    probe = probe_config(batch_size=2)
    try:
        cohort = Cohort(make_model, data, [probe, dict(probe, seed=1)], exact=False)
        cohort.train_step(data.x_train[:2], data.y_train[:2])
    except ModelError:
        raise
    except NotVectorizable as e:
        return str(e)
    except Exception as e:  # vmap refuses: in-place updates, randomness, data-dependent flow
        return _in_words(e)
    return None


def cohort_obstacle(model: nn.Module) -> str | None:
    """What in a model's layers keeps it out of a cohort, in words, or None."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            return "dropout needs per-member random masks"
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            return "batch norm keeps running statistics"
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model keeps buffers ({', '.join(buffers[:3])}) that members cannot share"
    return None


def _in_words(error: Exception) -> str:
    text = str(error)
    if "randomness" in text:
        return "its forward draws random numbers (e.g. F.dropout), and members would need their own random streams"
    if "data-dependent control flow" in text or "data dependent" in text:
        return "its forward branches on tensor values (data-dependent control flow), which a stacked cohort cannot follow"
    if ".item()" in text or "item()" in text:
        return "its forward reads tensor values into Python (.item()), which a stacked cohort cannot do"
    if "inplace" in text.lower() or "in-place" in text.lower():
        return "its forward updates a tensor in place in a way that cannot be stacked"
    first = text.splitlines()[0] if text else ""
    return f"torch.func.vmap cannot stack its forward ({type(error).__name__}: {first})"


def seconds_per_step(make_model: Callable[[], nn.Module], data: Dataset, batch_size: int, repeats: int = 3) -> float:
    """How long one training step of one trial takes (after a warm-up), as `train` runs it."""
    model = make_model().to(data.x_train.device)
    optimizer, _ = build_optimizer(model.parameters(), probe_config(batch_size))
    index = torch.arange(min(batch_size, data.n_train), device=data.x_train.device)
    x, y = data.x_train[index], data.y_train[index]

    def step() -> None:
        loss = training_loss(model(x), y, data.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    _synchronize(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _synchronize(x.device)
    return (time.perf_counter() - start) / repeats


def seconds_per_member_step(make_model: Callable[[], nn.Module], data: Dataset, members: int, batch_size: int, repeats: int = 3) -> float:
    """How long one training step takes per member of a cohort of `members` (after a warm-up)."""
    probe = probe_config(batch_size)
    cohort = Cohort(make_model, data, [dict(probe, seed=i) for i in range(members)])
    index = torch.arange(min(batch_size, data.n_train), device=cohort.device)
    x, y = data.x_train[index], data.y_train[index]
    cohort.train_step(x, y)
    _synchronize(cohort.device)
    start = time.perf_counter()
    for _ in range(repeats):
        cohort.train_step(x, y)
    _synchronize(cohort.device)
    return (time.perf_counter() - start) / (repeats * members)


def member_footprint(make_model: Callable[[], nn.Module], data: Dataset, config: Mapping[str, Any]) -> int:
    """Bytes of device memory one member needs (measured on a 2-member cohort, CUDA only)."""
    device = data.x_train.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    batch = resolve_batch_size(config["batch_size"], data.n_train)
    cohort = Cohort(make_model, data, [config, dict(config)])
    index = torch.arange(batch, device=device)
    cohort.train_step(data.x_train[index], data.y_train[index])
    cohort.evaluate("accuracy" if data.task == "classification" else "mse")
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del cohort
    return max(1, math.ceil(peak / 2))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
