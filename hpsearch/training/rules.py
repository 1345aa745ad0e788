"""The update rules of a cohort's blocks, each beside the torch.optim line it mirrors.

`param` and `grad` are a block's rows ([n, P]); `t` is the step number (1, 2, ...), the same
for every member. Comments quote torch's single-tensor code (torch/optim/*.py); `hp` columns
are float32 [n, 1], `block.scalar` evaluates what torch evaluates in Python.
"""

from __future__ import annotations

from typing import Callable

import torch

from .updates import Block, maximum, where

Rule = Callable[[Block, torch.Tensor, torch.Tensor, int], None]


def _l2(block: Block, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # grad = grad.add(param, alpha=weight_decay), skipped when it is 0 (0 * param adds 0)
    return torch.addcmul(grad, block.hp["weight_decay"], param)


def _state(block: Block, name: str, like: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    if name not in block.state:
        block.state[name] = torch.zeros_like(like).add_(fill) if isinstance(fill, torch.Tensor) else torch.full_like(like, fill)
    return block.state[name]


def sgd(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    grad = _l2(block, param, grad)
    param.addcmul_(block.hp["neg_lr"], grad)  # param.add_(grad, alpha=-lr)


def momentum(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    grad = _l2(block, param, grad)
    if "buf" not in block.state:
        buf = block.state["buf"] = grad.clone()  # buf = grad.detach().clone()
    else:
        buf = block.state["buf"]
        buf.mul_(hp["momentum"]).addcmul_(hp["one_minus_dampening"], grad)  # .add_(grad, alpha=1 - dampening)
    grad = torch.addcmul(grad, hp["momentum"], buf) if block.rule == "nesterov" else buf  # grad.add(buf, alpha=momentum)
    param.addcmul_(hp["neg_lr"], grad)


def adagrad(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    grad = _l2(block, param, grad)
    state_sum = _state(block, "sum", param, block.hp["initial_accumulator_value"])  # full_like(p, init_value)
    neg_clr = block.scalar(lambda h: -(h.lr / (1 + (t - 1) * h.lr_decay)))  # clr = lr / (1 + (step - 1) * lr_decay)
    state_sum.addcmul_(grad, grad)
    std = state_sum.sqrt().add_(block.hp["eps"])
    param.addcdiv_(neg_clr * grad, std)  # param.addcdiv_(grad, std, value=-clr)


def rmsprop(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    grad = _l2(block, param, grad)
    square_avg = _state(block, "square_avg", param)
    square_avg.mul_(hp["alpha"]).addcmul_(hp["one_minus_alpha"] * grad, grad)  # .addcmul_(grad, grad, value=1 - alpha)
    if block.has("centered"):
        grad_avg = _state(block, "grad_avg", param)
        grad_avg.lerp_(grad, hp["one_minus_alpha"])
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        avg = square_avg.sqrt()
    avg = avg.add_(hp["eps"])
    if block.has("momentum"):
        buf = _state(block, "buf", param)
        buf.mul_(hp["momentum"]).addcdiv_(grad, avg)
        param.addcmul_(hp["neg_lr"], buf)  # param.add_(buf, alpha=-lr)
    else:
        param.addcdiv_(hp["neg_lr"] * grad, avg)  # param.addcdiv_(grad, avg, value=-lr)


def _moments(block: Block, param: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hp = block.hp
    exp_avg, exp_avg_sq = _state(block, "exp_avg", param), _state(block, "exp_avg_sq", param)
    exp_avg.lerp_(grad, hp["one_minus_beta1"])  # exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(hp["beta2"]).addcmul_(hp["one_minus_beta2"] * grad, grad)  # .addcmul_(grad, grad, value=1 - beta2)
    return exp_avg, exp_avg_sq


def _decay_or_l2(block: Block, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    if block.rule == "adamw" or block.has("decoupled"):
        param.mul_(block.hp["decay"])  # param.mul_(1 - lr * weight_decay)
        return grad
    return _l2(block, param, grad)


def adam(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    grad = _decay_or_l2(block, param, grad)
    exp_avg, exp_avg_sq = _moments(block, param, grad)
    neg_step_size = block.scalar(lambda h: -(h.lr / (1 - h.beta1**t)))  # step_size = lr / bias_correction1
    bias_correction2_sqrt = block.scalar(lambda h: (1 - h.beta2**t) ** 0.5)
    if block.has("amsgrad"):
        max_sq = _state(block, "max_exp_avg_sq", param)
        torch.maximum(max_sq, exp_avg_sq, out=max_sq)
        exp_avg_sq = max_sq
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(block.hp["eps"])
    param.addcdiv_(neg_step_size * exp_avg, denom)  # param.addcdiv_(exp_avg, denom, value=-step_size)


def adadelta(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    grad = _l2(block, param, grad)
    square_avg, acc_delta = _state(block, "square_avg", param), _state(block, "acc_delta", param)
    square_avg.mul_(hp["rho"]).addcmul_(hp["one_minus_rho"] * grad, grad)  # .addcmul_(grad, grad, value=1 - rho)
    std = square_avg.add(hp["eps"]).sqrt_()
    delta = acc_delta.add(hp["eps"]).sqrt_()
    delta.div_(std).mul_(grad)
    acc_delta.mul_(hp["rho"]).addcmul_(hp["one_minus_rho"] * delta, delta)
    param.addcmul_(hp["neg_lr"], delta)  # param.add_(delta, alpha=-lr)


def adamax(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    grad = _l2(block, param, grad)
    exp_avg, exp_inf = _state(block, "exp_avg", param), _state(block, "exp_inf", param)
    exp_avg.lerp_(grad, hp["one_minus_beta1"])
    torch.maximum(exp_inf.mul_(hp["beta2"]), grad.abs().add_(hp["eps"]), out=exp_inf)
    neg_clr = block.scalar(lambda h: -(h.lr / (1 - h.beta1**t)))  # clr = lr / bias_correction
    param.addcdiv_(neg_clr * exp_avg, exp_inf)  # param.addcdiv_(exp_avg, exp_inf, value=-clr)


def nadam(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    bias_correction2 = block.scalar(lambda h: 1 - h.beta2**t)
    grad = _decay_or_l2(block, param, grad)
    mu = lambda h, s: h.beta1 * (1.0 - 0.5 * (0.96 ** (s * h.momentum_decay)))  # noqa: E731
    mu_product = _state(block, "mu_product", hp["beta1"], 1.0)  # a float32 scalar per member
    mu_product.mul_(block.scalar(lambda h: mu(h, t)))  # mu_product *= mu
    block.values["mu_product"] = mu_product.squeeze(1).tolist() if block.exact else mu_product.double()
    exp_avg, exp_avg_sq = _moments(block, param, grad)
    denom = exp_avg_sq.div(bias_correction2).sqrt().add_(hp["eps"])
    # value=(-lr * (1.0 - mu) / (1.0 - mu_product)); then mu_product_next = mu_product * mu_next
    first = block.scalar(lambda h: -h.lr * (1.0 - mu(h, t)) / (1.0 - h.mu_product))
    second = block.scalar(lambda h: (-h.lr * mu(h, t + 1)) / (1.0 - h.mu_product * mu(h, t + 1)))
    param.addcdiv_(first * grad, denom)
    param.addcdiv_(second * exp_avg, denom)


def radam(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    grad = _decay_or_l2(block, param, grad)
    exp_avg, exp_avg_sq = _moments(block, param, grad)
    bias_corrected_exp_avg = exp_avg / block.scalar(lambda h: 1 - h.beta1**t)

    def rho_t(h):  # type: ignore[no-untyped-def]
        rho_inf = 2 / (1 - h.beta2) - 1
        return rho_inf, rho_inf - 2 * t * (h.beta2**t) / (1 - h.beta2**t)

    def rect(h):  # type: ignore[no-untyped-def]
        rho_inf, rho = rho_t(h)
        if not isinstance(rho, torch.Tensor) and not rho > 5.0:
            return 0.0  # torch computes it only when rho_t > 5
        value = ((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) ** 0.5
        return where(rho > 5.0, value, 0.0)

    rectified = block.scalar(lambda h: where(rho_t(h)[1] > 5.0, 1.0, 0.0)).bool()
    base = bias_corrected_exp_avg * block.column(block.values["lr"])  # bias_corrected_exp_avg * lr
    # _compute_adaptive_lr: (bias_correction2**0.5) / exp_avg_sq_sqrt, a Python float over a
    # tensor, which torch evaluates as exp_avg_sq_sqrt.reciprocal() * value
    adaptive = exp_avg_sq.sqrt().add_(block.hp["eps"]).reciprocal() * block.scalar(lambda h: (1 - h.beta2**t) ** 0.5)
    update = torch.where(rectified, base * adaptive * block.scalar(rect), base)
    param.add_(update, alpha=-1.0)


def asgd(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    grad = _l2(block, param, grad)
    eta = _state(block, "eta", hp["lambd"], block.column(block.values["lr"]))  # as_tensor(lr)
    mu = _state(block, "mu", hp["lambd"], 1.0)
    ax = _state(block, "ax", param)
    block.values["eta"] = eta.squeeze(1).tolist() if block.exact else eta.double()  # eta_value = eta.item()
    param.mul_(block.scalar(lambda h: 1 - h.lambd * h.eta))  # param.mul_(1 - lambd * eta_value)
    param.addcmul_(-eta, grad)  # param.add_(grad, alpha=-eta_value)
    # ax.add_(param.sub(ax).mul_(mu)) if mu != 1, else ax.copy_(param)
    ax.copy_(torch.where(mu == 1, param, ax + param.sub(ax).mul_(mu)))
    eta.copy_(block.scalar(lambda h: h.lr / ((1 + h.lambd * h.lr * t) ** h.alpha)))
    mu.copy_(block.scalar(lambda h: 1 / maximum(1, t - h.t0)))


def rprop(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    hp = block.hp
    prev = _state(block, "prev", param)
    step_size = _state(block, "step_size", param, block.column(block.values["lr"]))  # full_like(grad, lr)
    sign = grad.mul(prev).sign()
    # sign[sign.gt(0)] = etaplus; sign[sign.lt(0)] = etaminus; sign[sign.eq(0)] = 1
    sign = torch.where(sign.gt(0), hp["eta_plus"], torch.where(sign.lt(0), hp["eta_minus"], torch.where(sign.eq(0), 1.0, sign)))
    step_size.mul_(sign).clamp_(hp["step_size_min"], hp["step_size_max"])
    grad = grad.clone()
    grad[sign.eq(hp["eta_minus"])] = 0
    param.addcmul_(grad.sign(), step_size, value=-1)
    prev.copy_(grad)


def torch_class(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    for optimizer in block.members:  # each member's own optimizer, on views of its rows
        optimizer.step()


RULES: dict[str, Rule] = {
    "sgd": sgd, "momentum": momentum, "nesterov": momentum, "adagrad": adagrad, "rmsprop": rmsprop,
    "adam": adam, "adamw": adam, "adadelta": adadelta, "adamax": adamax, "nadam": nadam, "radam": radam,
    "asgd": asgd, "rprop": rprop, "torch": torch_class,
}


def step(block: Block, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
    """One optimizer step of the block's rows `param` [n, P] (in place), given `grad` [n, P]."""
    RULES[block.rule](block, param, grad, t)
