"""Where each parameter of a cohort's members lives in its one `[K, P]` tensor.

Member k's parameters are row k; each parameter tensor starts at a multiple of 16 floats
and every row is a multiple of 16 floats long. Allocations on the CPU are 64-byte aligned,
so every member's weight is aligned as the single model's own weight is, and BLAS kernels,
whose rounding can depend on alignment, treat them alike. The padding stays zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ALIGN = 16  # floats: 64 bytes


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True)
class Layout:
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]
    width: int  # P, padding included

    @classmethod
    def of(cls, model: nn.Module) -> "Layout":
        names, shapes, offsets = [], [], []
        offset = 0
        for name, p in model.named_parameters():
            names.append(name)
            shapes.append(p.shape)
            offsets.append(offset)
            offset += _aligned(p.numel())
        return cls(tuple(names), tuple(shapes), tuple(offsets), max(offset, ALIGN))

    def row(self, model: nn.Module) -> torch.Tensor:
        """One member's parameters as a row (the model's parameters in `named_parameters` order)."""
        first = next(model.parameters())
        row = torch.zeros(self.width, dtype=first.dtype, device=first.device)
        for p, offset in zip(model.parameters(), self.offsets):
            row[offset : offset + p.numel()] = p.detach().reshape(-1)
        return row

    def slices(self) -> list[slice]:
        return [slice(o, o + s.numel()) for o, s in zip(self.offsets, self.shapes)]

    def views(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> [K, *shape] views into `rows` ([K, P])."""
        k = rows.shape[0]
        return {n: rows[:, s].view(k, *shape) for n, s, shape in zip(self.names, self.slices(), self.shapes)}

    def member_views(self, rows: torch.Tensor, member: int) -> list[torch.Tensor]:
        """One member's parameters, as views shaped like the model's."""
        return [rows[member, s].view(shape) for s, shape in zip(self.slices(), self.shapes)]

    def unpadded(self, rows: torch.Tensor) -> torch.Tensor:
        """[K, P] -> [K, n_params]: the parameters alone, in the model's order."""
        return torch.cat([rows[:, s] for s in self.slices()], dim=1)
