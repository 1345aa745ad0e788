"""Newton's method as a torch optimizer, stepped with a closure like torch.optim.LBFGS.

    optimizer = Newton(model.parameters(), damping=1e-4)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=True)   # Newton differentiates the gradient once more
        return loss

    optimizer.step(closure)

Each step solves (H + damping * I) d = -g for the Hessian H of the closure's loss. Up to
`hessian_limit` parameters H is formed exactly (one Hessian-vector product per parameter)
and factorised; if it is not positive definite, the damping grows tenfold until it is
(Levenberg-Marquardt). Above the limit the system is solved by conjugate gradient on
Hessian-vector products (Newton-CG, at most `cg_iters` products, relative residual
`cg_tol`), stopping early on negative curvature. The step is `lr * d`, or with
`line_search="backtracking"` the first of lr, lr/2, ... with sufficient decrease.
An undamped full step solves a least-squares problem exactly: one step of linear regression.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from .line_search import add_to, backtracking

LINE_SEARCHES = ("backtracking", "none")
# How far the damping may grow to make H + damping * I positive definite.
_DAMPING_TRIES = 12
_ROWS = 128  # Hessian rows per vectorized batch of Hessian-vector products


class Newton(torch.optim.Optimizer):
    create_graph = True  # hpsearch's engine then calls loss.backward(create_graph=True)

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        damping: float = 1e-4,
        line_search: str = "backtracking",
        hessian_limit: int = 1000,
        cg_iters: int = 50,
        cg_tol: float = 1e-6,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        if line_search not in LINE_SEARCHES:
            raise ValueError(f"line_search must be one of {', '.join(LINE_SEARCHES)}, got {line_search!r}")
        if hessian_limit < 0 or cg_iters < 1 or not cg_tol > 0:
            raise ValueError(f"need hessian_limit >= 0, cg_iters >= 1, cg_tol > 0, got {hessian_limit}, {cg_iters}, {cg_tol}")
        defaults = dict(lr=lr, damping=damping, line_search=line_search, hessian_limit=hessian_limit, cg_iters=cg_iters, cg_tol=cg_tol)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("Newton takes one parameter group")

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        group = self.param_groups[0]
        with torch.enable_grad():
            loss = closure()
        params = [p for p in group["params"] if p.grad is not None]
        if any(p.grad.grad_fn is None for p in params):
            raise RuntimeError("Newton needs the closure to call loss.backward(create_graph=True)")
        with torch.enable_grad():
            grad = torch.cat([p.grad.reshape(-1) for p in params])
            if grad.numel() <= group["hessian_limit"]:
                direction = _exact_direction(grad, params, group["damping"])
            else:
                direction = _cg_direction(grad, params, group["damping"], group["cg_iters"], group["cg_tol"])
        grad = grad.detach()
        for p in params:
            p.grad = p.grad.detach()  # drop the graph now; it holds the parameters
        slope = float(grad.dot(direction))
        if not slope < 0:  # not a descent direction: fall back to the gradient
            direction, slope = -grad, -float(grad.dot(grad))
        step = group["lr"]
        if group["line_search"] == "backtracking" and slope < 0:
            step = backtracking(closure, params, float(loss), slope, direction, step)
            for p in params:
                if p.grad is not None:
                    p.grad = p.grad.detach()
        add_to(params, step, direction)
        return loss


def _hvp(grad: torch.Tensor, params: list[torch.Tensor], vector: torch.Tensor, batched: bool = False) -> torch.Tensor:
    parts = torch.autograd.grad(grad, params, vector, retain_graph=True, is_grads_batched=batched)
    if batched:
        return torch.cat([part.reshape(vector.shape[0], -1) for part in parts], dim=1)
    return torch.cat([part.reshape(-1) for part in parts])


def _exact_direction(grad: torch.Tensor, params: list[torch.Tensor], damping: float) -> torch.Tensor:
    n = grad.numel()
    eye = torch.eye(n, dtype=grad.dtype, device=grad.device)
    try:  # the products in chunks of rows, vectorized; memory grows with the chunk
        hessian = torch.cat([_hvp(grad, params, eye[i : i + _ROWS], batched=True) for i in range(0, n, _ROWS)])
    except RuntimeError:  # an operation without a batching rule: one product at a time
        hessian = torch.stack([_hvp(grad, params, row) for row in eye])
    h = hessian.detach().double()
    h = (h + h.T) / 2
    scale = float(h.diagonal().abs().max()) or 1.0
    identity = torch.eye(n, dtype=h.dtype, device=h.device)
    shift = damping
    for _ in range(_DAMPING_TRIES):
        factor, info = torch.linalg.cholesky_ex(h + shift * identity)
        if int(info) == 0:
            solved = torch.cholesky_solve(-grad.detach().double().unsqueeze(1), factor).squeeze(1)
            return solved.to(grad.dtype)
        shift = max(10 * shift, 1e-8 * scale)
    return -grad.detach()


def _cg_direction(grad: torch.Tensor, params: list[torch.Tensor], damping: float, iters: int, tol: float) -> torch.Tensor:
    g = grad.detach()
    x = torch.zeros_like(g)
    r = -g
    p = r.clone()
    rs = r.dot(r)
    target = tol * tol * rs
    for i in range(iters):
        ap = _hvp(grad, params, p).detach() + damping * p
        curvature = p.dot(ap)
        if curvature <= 0:  # negative curvature: stop with what descends
            return -g if i == 0 else x
        alpha = rs / curvature
        x.add_(p, alpha=float(alpha))
        r.sub_(ap, alpha=float(alpha))
        rs_next = r.dot(r)
        if rs_next <= target:
            break
        p = r + (rs_next / rs) * p
        rs = rs_next
    return x

