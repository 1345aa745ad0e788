"""Line searches for the second-order optimizers, on parameters seen as one flat vector.

* `backtracking`: Armijo's sufficient decrease, halving the step (Newton's method).
* `wolfe`: the strong-Wolfe search torch.optim.LBFGS uses, started from the minimiser of the
  cubic through a first probe; on a quadratic that start is the exact minimiser along the
  line, so conjugate gradient keeps the finite termination it has with exact line searches.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.optim.lbfgs import _cubic_interpolate, _strong_wolfe  # the search LBFGS itself runs

Closure = Callable[[], torch.Tensor]


def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def add_to(params: Sequence[torch.Tensor], step: float, direction: torch.Tensor) -> None:
    """params += step * direction (direction flat)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.add_(direction[offset : offset + n].view_as(p), alpha=step)
        offset += n


def set_to(params: Sequence[torch.Tensor], values: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.copy_(values[offset : offset + n].view_as(p))
        offset += n


def loss_at(closure: Closure, params: Sequence[torch.Tensor], x: torch.Tensor, step: float, direction: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The loss and flat gradient at x + step * direction; the parameters are left at x."""
    add_to(params, step, direction)
    with torch.enable_grad():
        loss = float(closure().detach())
    grad = flat_grad(params).detach()
    set_to(params, x)
    return loss, grad


def backtracking(
    closure: Closure, params: Sequence[torch.Tensor], loss: float, slope: float, direction: torch.Tensor,
    step: float, c1: float = 1e-4, tries: int = 30,
) -> float:
    """The first of step, step/2, step/4, ... with sufficient decrease (0.0 if none has)."""
    x = flat_params(params)
    for _ in range(tries):
        trial, _ = loss_at(closure, params, x, step, direction)
        if trial <= loss + c1 * step * slope:
            return step
        step /= 2
    return 0.0


def wolfe(
    closure: Closure, params: Sequence[torch.Tensor], loss: float, grad: torch.Tensor, direction: torch.Tensor,
    step: float, c2: float = 0.1,
) -> float:
    """A step along `direction` satisfying the strong Wolfe conditions (curvature c2)."""
    x = flat_params(params)
    slope = grad.dot(direction)
    probe_loss, probe_grad = loss_at(closure, params, x, step, direction)
    start = _cubic_interpolate(0.0, loss, slope, step, probe_loss, probe_grad.dot(direction), bounds=(0.0, 10 * step))
    start = float(start) if float(start) > 0 else step

    def evaluate(x: torch.Tensor, t: float, d: torch.Tensor) -> tuple[float, torch.Tensor]:
        return loss_at(closure, params, x, t, d)

    _, _, found, _ = _strong_wolfe(evaluate, x, start, direction, loss, grad, slope, c2=c2)
    return float(found)
