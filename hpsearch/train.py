"""Train ONE trial config: the reference engine, and the definition of correct.

Stock `torch.optim` objects from `build_optimizer`, any `nn.Module`, the dataset resident on
the device. Per epoch: the batches of `batch_order`, one scheduler step, one evaluation on
the validation set. The cohort engine must reproduce these numbers member by member.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .data import Dataset, batch_order, resolve_batch_size
from .objective import (
    autocast,
    Diverged,
    Epoch,
    EpochCallback,
    Interrupted,
    TrainResult,
    divergence,
    summed_metric,
    training_loss,
)
from .optim import build_optimizer

EVAL_CHUNK = 8192  # validation examples per forward pass; bounds evaluation memory


def train(
    make_model: Callable[[], nn.Module],
    data: Dataset,
    config: Mapping[str, Any],
    metric: str,
    *,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    precision: str = "fp32",
) -> TrainResult:
    """Train `make_model()` with one trial config on `data` (already on its device)."""
    device = data.x_train.device
    torch.manual_seed(int(config["seed"]))
    model = make_model().to(device)
    optimizer, scheduler = build_optimizer(model.parameters(), config)
    batch_size = resolve_batch_size(config["batch_size"], data.n_train)
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(int(config["epochs"])):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        total = torch.zeros((), device=device)
        for index in batch_order(data.n_train, batch_size, int(config["data_seed"]), epoch, device):
            with autocast(device, precision):
                outputs = model(data.x_train[index])
            loss = training_loss(outputs.float(), data.y_train[index], data.task)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
            if should_stop is not None and should_stop():
                raise Interrupted()
        scheduler.step()
        train_loss = float(total) / data.n_train
        with autocast(device, precision):
            value = evaluate(model, data, metric)
        reason = divergence(train_loss, value, epoch)
        if reason is not None:
            raise Diverged(reason, result.epochs)
        record = Epoch(epoch=epoch, metric=value, train_loss=train_loss, lr=lr)
        result.epochs.append(record)
        result.metric = value
        if on_epoch is not None and not on_epoch(record):
            result.pruned = True
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.seconds = time.perf_counter() - start
    return result


def seconds_per_step(make_model: Callable[[], nn.Module], data: Dataset, batch_size: int, repeats: int = 3) -> float:
    """How long one training step of one trial takes (after a warm-up), as `train` runs it."""
    config = {"optimizer": {"name": "adam", "lr": 0.0}, "schedule": {"name": "constant"}}
    model = make_model().to(data.x_train.device)
    optimizer, _ = build_optimizer(model.parameters(), config)
    index = torch.arange(min(batch_size, data.n_train), device=data.x_train.device)
    x, y = data.x_train[index], data.y_train[index]

    def step() -> None:
        loss = training_loss(model(x), y, data.task)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) / repeats


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, metric: str) -> float:
    """The validation metric of one model."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=data.x_val.device)
    for start in range(0, len(data.x_val), EVAL_CHUNK):
        x = data.x_val[start : start + EVAL_CHUNK]
        y = data.y_val[start : start + EVAL_CHUNK]
        total += summed_metric(model(x).float(), y, data.task, metric)
    return float(total) / len(data.x_val)
