"""Newton, conjugate gradient and L-BFGS: what the theory promises, and steps with a closure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpsearch import build_optimizer
from hpsearch.config.spec import DataSection, ModelSection
from hpsearch.optim import ConjugateGradient, Newton, needs_closure
from hpsearch.training.data import load_dataset
from hpsearch.training.models import model_factory
from hpsearch.training.train import train

NEWTON = {"name": "newton", "lr": 1.0, "damping": 0.0, "line_search": "none", "hessian_limit": 1000, "cg_iters": 50, "cg_tol": 1e-12}
CG = {"name": "cg", "lr": 1.0, "method": "polak-ribiere", "line_search": "strong_wolfe"}


def regression(dtype: torch.dtype = torch.float64, n: int = 200, features: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An ill-conditioned least-squares problem and its solution (weights, then bias)."""
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 3.0, 0.3, 10.0, 1.0][:features])
    x = (torch.randn(n, features, generator=generator) * scale + 2).to(dtype)
    y = x @ torch.randn(features, 1, generator=generator).to(dtype) + 0.5 + 0.1 * torch.randn(n, 1, generator=generator).to(dtype)
    design = torch.cat([x, torch.ones(n, 1, dtype=dtype)], dim=1)
    return x, y, torch.linalg.lstsq(design.double(), y.double()).solution.squeeze(1)


def closure_for(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def closure() -> torch.Tensor:  # as the README tells other projects to write it
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward(create_graph=getattr(optimizer, "create_graph", False))
        return loss

    return closure


def error_after(config: dict, steps: int, x: torch.Tensor, y: torch.Tensor, solution: torch.Tensor) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1).to(x.dtype)
    optimizer, _ = build_optimizer(model.parameters(), {"optimizer": config, "schedule": {"name": "constant"}})
    errors = []
    for _ in range(steps):
        optimizer.step(closure_for(model, optimizer, x, y))
        theta = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()]).double()
        errors.append(float((theta - solution).abs().max() / solution.abs().max()))
    return errors


@pytest.mark.parametrize("hessian_limit", [1000, 0], ids=["exact Hessian", "Newton-CG"])
def test_one_undamped_newton_step_solves_least_squares(hessian_limit: int) -> None:
    x, y, solution = regression()
    (newton,) = error_after({**NEWTON, "hessian_limit": hessian_limit}, 1, x, y, solution)
    assert newton < 1e-6
    (gradient_descent,) = error_after({"name": "sgd", "lr": 1e-3, "weight_decay": 0.0}, 1, x, y, solution)
    assert gradient_descent > 0.1  # one step of anything less than Newton is far off


def test_newton_on_the_shipped_linear_data_in_float32() -> None:
    data = load_dataset(DataSection(name="linear"), "mse")
    design = torch.cat([data.x_train, torch.ones(data.n_train, 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, data.y_train.double()).solution.squeeze(1)
    (error,) = error_after(NEWTON, 1, data.x_train, data.y_train, solution)
    assert error < 1e-5


@pytest.mark.parametrize("method", ["polak-ribiere", "fletcher-reeves"])
def test_conjugate_gradient_solves_least_squares_within_as_many_iterations_as_parameters(method: str) -> None:
    x, y, solution = regression()
    parameters = x.shape[1] + 1
    errors = error_after({**CG, "method": method}, parameters, x, y, solution)
    assert errors[-1] < 1e-4, errors
    assert errors[-2] > 1e-3, errors  # and not fewer: the bound is the one the theory gives


def test_newton_needs_the_graph_and_says_so() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = Newton(model.parameters())
    x, y = torch.randn(8, 2), torch.randn(8, 1)

    def plain() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match=r"loss.backward\(create_graph=True\)"):
        optimizer.step(plain)


def test_second_order_optimizers_take_a_closure_the_others_do_not() -> None:
    params = list(torch.nn.Linear(2, 1).parameters())
    assert needs_closure(Newton(params)) and needs_closure(ConjugateGradient(params)) and needs_closure(torch.optim.LBFGS(params))
    assert not needs_closure(torch.optim.Adam(params)) and not needs_closure(torch.optim.SGD(params, lr=0.1))


def steps_to(config: dict, target: float, epochs: int) -> int | None:
    """Full-batch steps of the reference engine until the training loss is at most `target`."""
    data = load_dataset(DataSection(name="digits", limit=700), "loss")
    make = model_factory(ModelSection(name="softmax"), data)
    trial = {"optimizer": config, "schedule": {"name": "constant", "warmup_epochs": 0}, "batch_size": "full", "epochs": epochs, "seed": 0, "data_seed": 0}
    result = train(make, data, trial, "loss", on_epoch=lambda epoch: epoch.train_loss > target)
    losses = [e.train_loss for e in result.epochs]  # each epoch's loss before its one step
    return next((i for i, loss in enumerate(losses) if loss <= target), None)


def test_on_softmax_regression_the_second_order_methods_beat_gradient_descent() -> None:
    target = 0.25
    gradient_descent = [steps_to({"name": "sgd", "lr": lr, "weight_decay": 0.0}, target, 60) for lr in (0.3, 1.0, 3.0)]
    best = min(s for s in gradient_descent if s is not None)
    newton = steps_to({"name": "newton", "lr": 1.0, "damping": 1e-4, "line_search": "backtracking", "hessian_limit": 1000, "cg_iters": 50, "cg_tol": 1e-6}, target, best)
    cg = steps_to(CG, target, best)
    lbfgs = steps_to({"name": "lbfgs", "lr": 1.0, "max_iter": 1, "history_size": 100, "line_search_fn": "strong_wolfe"}, target, best)
    assert None not in (newton, cg, lbfgs), (newton, cg, lbfgs, best)
    assert max(newton, cg, lbfgs) < best, (newton, cg, lbfgs, gradient_descent)
    assert newton <= 3  # a handful of Newton steps on a convex problem
