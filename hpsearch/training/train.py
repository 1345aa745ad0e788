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

from ..config.batches import resolve_batch_size
from ..optim import build_optimizer
from .data import Dataset, batch_order
from .evaluation import validation_metric
from .losses import training_loss
from .precision import autocast
from .results import Diverged, Epoch, EpochCallback, Interrupted, TrainResult, divergence


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
            loss = training_loss(outputs.float(), data.y_train[index], data.loss)
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


def evaluate(model: nn.Module, data: Dataset, metric: str) -> float:
    """The validation metric of one model."""
    model.eval()
    return validation_metric(model, data, metric, members=1)[0]
