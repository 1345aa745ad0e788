"""K copies of one model run as one: the forward pass of a cohort.

    forward = stacked_forward(model, exact=device.type == "cpu")
    outputs = forward(params, x)      # params: name -> [K, *shape]; x: [B, ...]; -> [K, B, out]

Batched (a GPU): sequential models of standard layers (the reference models) run as one
wide model, as in HFTA: a convolution on the shared input becomes one convolution with K
times the output channels, later convolutions become grouped convolutions with the members
side by side in the channel dimension, and linear layers become batched matrix products with
the members on a leading axis. Pooling and activations apply unchanged. Any other model runs
through `torch.func.vmap` over `functional_call`.

Exact (the CPU): each member runs the single model's own forward (`functional_call` on views
of its row), so its forward and backward call the very kernels a single model calls, with the
same shapes, strides and alignment. Batched kernels round differently: `baddbmm` is not
`addmm` for 784-wide inputs at two threads, a batch of one takes another path, and a BLAS
kernel's rounding depends on its operands' alignment. A member's numbers then never depend
on its cohort mates or the cohort's size; the cohort still saves the optimizer steps, the
batches and the bookkeeping of K trials.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

Forward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]

# Layers that act on every channel (or element) on its own: the same call serves K members.
_PER_CHANNEL = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
)


def stacked_forward(model: nn.Module, exact: bool) -> Forward:
    """The fastest faithful way to run K copies of `model` side by side."""
    if exact:
        return lambda params, x: torch.stack(member_outputs(model, params, x))
    if isinstance(model, nn.Sequential) and _plan(model) is not None:
        return _SequentialStack(model)
    single = lambda params, x: functional_call(model, params, (x,))  # noqa: E731
    return vmap(single, in_dims=(0, None), randomness="error")


def _plan(model: nn.Sequential) -> list[str] | None:
    """The layout after each layer ("shared", "channels", "rows"), or None if unsupported."""
    layout = "shared"  # shared: [B, ...] for all; channels: [B, K*C, H, W]; rows: [K, B, F]
    plan = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            if layout == "channels":
                return None
            layout = "rows"
        elif isinstance(layer, nn.Conv2d):
            if layout == "rows" or layer.padding_mode != "zeros" or (layout == "shared" and layer.groups != 1):
                return None
            layout = "channels"
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                return None
            layout = "rows" if layout == "channels" else layout
        elif isinstance(layer, _PER_CHANNEL):
            if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)) and layout == "rows":
                return None
        else:
            return None
        plan.append(layout)
    return plan if layout == "rows" else None


def member_outputs(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Each member's outputs from the single model's own forward (params: name -> [K, *shape])."""
    rows = {name: p.unbind(0) for name, p in params.items()}  # one node for all members' gradients
    k = len(next(iter(rows.values())))
    return [functional_call(model, {name: r[i] for name, r in rows.items()}, (x,)) for i in range(k)]


def member_forward(model: nn.Module, params: dict[str, torch.Tensor], member: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """One member's forward, for evaluating it exactly as a single model is evaluated."""
    own = {name: p[member] for name, p in params.items()}
    return lambda x: functional_call(model, own, (x,))


class _SequentialStack:
    def __init__(self, model: nn.Sequential):
        self.layers = list(model.named_children())

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        k = next(iter(params.values())).shape[0]
        layout = "shared"
        for name, layer in self.layers:
            if isinstance(layer, nn.Linear):
                weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                x = _linear(x.expand(k, *x.shape) if layout == "shared" else x, weight, bias)
                layout = "rows"
            elif isinstance(layer, nn.Conv2d):
                weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                x = _conv(x, weight, bias, layer, layout == "shared")
                layout = "channels"
            elif isinstance(layer, nn.Flatten):
                if layout == "channels":
                    # [B, K*C, H, W] -> [K, B, C*H*W]: each member's features in the C, H, W
                    # order a single model's Flatten gives.
                    x = x.reshape(x.shape[0], k, -1).transpose(0, 1)
                    layout = "rows"
                elif layout == "rows":
                    x = x.flatten(start_dim=2)
                else:
                    x = layer(x)
            else:
                x = layer(x)
        return x


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, layer: nn.Conv2d, shared: bool) -> torch.Tensor:
    """One (wide or grouped) convolution for K members: [B, C or K*C, H, W] -> [B, K*O, H, W]."""
    k = weight.shape[0]
    return F.conv2d(
        x,
        weight.reshape(-1, *weight.shape[2:]),
        None if bias is None else bias.reshape(-1),
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.groups if shared else k * layer.groups,
    )
