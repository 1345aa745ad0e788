"""Muon for a whole model: torch.optim.Muon for the 2-D weights, AdamW for everything else.

torch's Muon takes only matrices and its documentation pairs it with AdamW for the rest
(biases, convolution kernels). This class is that pairing as one optimizer, so one scheduler
and one `build_optimizer` call serve a model:

    optimizer = Muon(model.parameters(), lr=1e-3, weight_decay=0.1)

Both halves share `lr` and `weight_decay` (the param groups schedulers see), which is why
`adjust_lr_fn` defaults to "match_rms_adamw": it scales Muon's update to AdamW's size, so one
learning rate suits both. Needs a torch that has torch.optim.Muon.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class Muon(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = "match_rms_adamw",
        adamw_betas: tuple[float, float] = (0.9, 0.999),
        adamw_eps: float = 1e-8,
    ) -> None:
        if not hasattr(torch.optim, "Muon"):
            raise ValueError(f"muon needs torch.optim.Muon, which torch {torch.__version__} does not have")
        params = list(params)
        if params and isinstance(params[0], dict):
            raise ValueError("muon takes a list of parameters, not parameter groups")
        matrices = [p for p in params if p.ndim == 2]
        others = [p for p in params if p.ndim != 2]
        groups = ([{"params": matrices, "part": "muon"}] if matrices else []) + (
            [{"params": others, "part": "adamw"}] if others else []
        )
        super().__init__(groups, {"lr": lr, "weight_decay": weight_decay})
        self._muon_settings = dict(momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        self._adamw_settings = dict(betas=adamw_betas, eps=adamw_eps)
        self._link()

    def _link(self) -> None:
        # The halves step this optimizer's own group dicts and share its state, so schedulers
        # and state_dict see one optimizer.
        self._parts: list[torch.optim.Optimizer] = []
        for group in self.param_groups:
            if group["part"] == "muon":
                part: torch.optim.Optimizer = torch.optim.Muon([group], lr=group["lr"], weight_decay=group["weight_decay"], **self._muon_settings)
            else:
                part = torch.optim.AdamW([group], lr=group["lr"], weight_decay=group["weight_decay"], **self._adamw_settings)
            part.state = self.state
            self._parts.append(part)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._link()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self._parts:
            part.step()
        return loss
