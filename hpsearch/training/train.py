"""Train ONE trial config: the reference engine, and the definition of correct.

Stock optimizers from `build_optimizer`, any `nn.Module`, the dataset resident on the
device. Per epoch: the batches of `batch_order`, one evaluation on the validation set, one
scheduler step (reduce-on-plateau is given that evaluation). An optimizer whose `step` needs
a closure (L-BFGS, Newton, conjugate gradient) is given one that re-evaluates the batch's
loss; the others step after one backward, as in any training loop. The cohort engine must
reproduce these numbers member by member.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..config.batches import resolve_batch_size
from ..optim import build_optimizer, is_plateau, needs_closure
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
    keep_parameters: bool = False,
) -> TrainResult:
    """Train `make_model()` with one trial config on `data` (already on its device)."""
    device = data.x_train.device
    torch.manual_seed(int(config["seed"]))
    model = make_model().to(device)
    optimizer, scheduler = build_optimizer(model.parameters(), config)
    with_closure = needs_closure(optimizer)
    create_graph = bool(getattr(optimizer, "create_graph", False))  # Newton's Hessian-vector products
    batch_size = resolve_batch_size(config["batch_size"], data.n_train)
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(int(config["epochs"])):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        total = torch.zeros((), device=device)
        for index in batch_order(data.n_train, batch_size, int(config["data_seed"]), epoch, device):
            x, y = data.x_train[index], data.y_train[index]

            def closure() -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, precision):
                    outputs = model(x)
                loss = training_loss(outputs.float(), y, data.loss)
                if not create_graph:
                    loss.backward()
                    return loss
                with warnings.catch_warnings():
                    # Newton drops the graph (and the cycle torch warns of) after each step.
                    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
                    loss.backward(create_graph=True)
                return loss

            if with_closure:
                loss = optimizer.step(closure)  # the loss before the step, as LBFGS returns it
            else:
                loss = closure()
                optimizer.step()
            total += loss.detach() * len(index)
            if should_stop is not None and should_stop():
                raise Interrupted()
        train_loss = float(total) / data.n_train
        with autocast(device, precision):
            value = evaluate(model, data, metric)
        if is_plateau(scheduler):
            scheduler.step(value)
        else:
            scheduler.step()
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
    if keep_parameters:
        result.parameters = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu()
    return result


def evaluate(model: nn.Module, data: Dataset, metric: str) -> float:
    """The validation metric of one model."""
    model.eval()
    return validation_metric(model, data, metric, members=1)[0]
