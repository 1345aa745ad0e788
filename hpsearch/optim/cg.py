"""Nonlinear conjugate gradient as a torch optimizer, stepped with a closure like LBFGS.

    optimizer = ConjugateGradient(model.parameters(), method="polak-ribiere")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)

Each step is one iteration: the direction d = -g + beta * d_previous, with Fletcher-Reeves'
beta = |g|^2 / |g_prev|^2 or Polak-Ribiere+'s beta = max(0, g.(g - g_prev) / |g_prev|^2), then
a step along d. It restarts from -g every `restart_every` iterations (default: as many as
there are parameters) and whenever d is not a descent direction. With the strong-Wolfe line
search, which is exact on a quadratic, it minimises a convex quadratic (linear least squares)
in at most as many iterations as it has parameters; with `line_search="none"` the step is lr.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from .line_search import add_to, flat_grad, wolfe

METHODS = ("polak-ribiere", "fletcher-reeves")
LINE_SEARCHES = ("strong_wolfe", "none")


class ConjugateGradient(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        method: str = "polak-ribiere",
        line_search: str = "strong_wolfe",
        restart_every: int | None = None,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if line_search not in LINE_SEARCHES:
            raise ValueError(f"line_search must be one of {', '.join(LINE_SEARCHES)}, got {line_search!r}")
        if restart_every is not None and restart_every < 1:
            raise ValueError(f"restart_every must be >= 1, got {restart_every}")
        super().__init__(params, dict(lr=lr, method=method, line_search=line_search, restart_every=restart_every))
        if len(self.param_groups) != 1:
            raise ValueError("ConjugateGradient takes one parameter group")

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        group = self.param_groups[0]
        params = group["params"]
        with torch.enable_grad():
            loss = closure()
        grad = flat_grad(params).detach()
        state = self.state[params[0]]  # one state for the whole vector, as LBFGS keeps it
        iteration = state.get("iteration", 0)
        restart_every = group["restart_every"] or grad.numel()
        direction = -grad
        if iteration % restart_every != 0:
            previous, previous_direction = state["grad"], state["direction"]
            norm = previous.dot(previous)
            if group["method"] == "fletcher-reeves":
                beta = grad.dot(grad) / norm
            else:
                beta = torch.clamp(grad.dot(grad - previous) / norm, min=0)
            direction = -grad + beta * previous_direction
        slope = float(grad.dot(direction))
        if not slope < 0:  # lost conjugacy: restart from steepest descent
            direction, slope, iteration = -grad, -float(grad.dot(grad)), 0
        if slope == 0:  # a stationary point
            return loss
        if iteration == 0 or "slope" not in state:
            step = group["lr"] * min(1.0, 1.0 / float(grad.abs().sum()))
        else:  # the previous step's first-order change, as Nocedal & Wright start it
            step = group["lr"] * min(1.0, state["step"] * state["slope"] / slope)
        if group["line_search"] == "strong_wolfe":
            step = wolfe(closure, params, float(loss), grad, direction, step)
        else:
            step = group["lr"]
        add_to(params, step, direction)
        state.update(iteration=iteration + 1, grad=grad, direction=direction, step=step, slope=slope)
        return loss
