"""K copies of one model run as one: the forward pass of a cohort.

    forward = stacked_forward(model, exact=device.type == "cpu")
    outputs = forward(params, x)      # params: name -> [K, *shape]; x: [B, ...]; -> [K, B, out]

Sequential models of standard layers (the reference models) run as one wide model, as in
HFTA: a convolution on the shared input becomes one convolution with K times the output
channels, later convolutions become grouped convolutions with the members side by side in
the channel dimension, and linear layers become batched matrix products with the members
on a leading axis. Pooling and activations apply unchanged.

With `exact`, every member's forward and backward are bit-for-bit the single model's: where
a batched kernel would round differently from the one torch uses for a single model (the
weight gradients of linear and convolution layers), the single-model kernel is called member
by member. That is what makes the cohort engine
equal the reference engine on the CPU; on a GPU the fast batched kernels run instead.

Any other model runs through `torch.func.vmap` over `functional_call`.
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
    if isinstance(model, nn.Sequential) and _plan(model) is not None:
        return _SequentialStack(model, exact)
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


class _SequentialStack:
    def __init__(self, model: nn.Sequential, exact: bool):
        self.layers = list(model.named_children())
        self.exact = exact

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        k = next(iter(params.values())).shape[0]
        layout = "shared"
        for name, layer in self.layers:
            if isinstance(layer, nn.Linear):
                weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                shared = layout == "shared"
                if self.exact:
                    x = _ExactLinear.apply(x, weight, bias, shared)
                else:
                    x = _linear(x.expand(k, *x.shape) if shared else x, weight, bias)
                layout = "rows"
            elif isinstance(layer, nn.Conv2d):
                weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                if self.exact:
                    x = _ExactConv.apply(x, weight, bias, layer, layout == "shared")
                else:
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
    # F.linear (addmm) member by member; the forward products are the single model's, bit for bit.
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


class _ExactLinear(torch.autograd.Function):
    """Batched forward and backward, except the weight gradient: each member's own `mm`.

    The batched input and bias gradients are the single model's bit for bit; the batched
    weight gradient is not (its products round differently), so that one is a loop.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, shared):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.shared = bias is not None, shared
        k = weight.shape[0]
        return _linear(x.expand(k, *x.shape) if shared else x, weight, bias)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        x, weight = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(grad, weight)
            if ctx.shared:
                grad_x = grad_x.sum(0)
        grad_w = torch.stack([grad[i].t().mm(x if ctx.shared else x[i]) for i in range(weight.shape[0])])
        grad_b = grad.sum(1) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None


class _ExactConv(torch.autograd.Function):
    """Grouped forward; each member's backward is the single model's convolution_backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer, shared):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.layer, ctx.shared = bias is not None, layer, shared
        return _conv(x, weight, bias, layer, shared)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        x, weight = ctx.saved_tensors
        layer = ctx.layer
        k, out = weight.shape[0], weight.shape[1]
        channels = x.shape[1] if ctx.shared else x.shape[1] // k
        want_x = bool(ctx.needs_input_grad[0])
        grads_x, grads_w, grads_b = [], [], []
        for i in range(k):
            member_x = x if ctx.shared else x[:, i * channels : (i + 1) * channels].contiguous()
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad[:, i * out : (i + 1) * out].contiguous(),
                member_x,
                weight[i],
                [out] if ctx.has_bias else None,
                list(layer.stride),
                list(layer.padding),
                list(layer.dilation),
                False,
                [0, 0],
                layer.groups,
                [want_x, True, ctx.has_bias],
            )
            grads_x.append(gx)
            grads_w.append(gw)
            grads_b.append(gb)
        grad_x = None
        if want_x:
            grad_x = torch.stack(grads_x).sum(0) if ctx.shared else torch.cat(grads_x, dim=1)
        grad_b = torch.stack(grads_b) if ctx.has_bias else None
        return grad_x, torch.stack(grads_w), grad_b, None, None
