"""Numeric precision on CUDA: fp32 (the reference), TF32 matmuls, or bf16 autocast.

On the CPU every precision is plain float32, which is what makes the engines comparable
bit for bit there.
"""

from __future__ import annotations

from typing import Any

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def set_precision(precision: str, device: torch.device) -> None:
    """fp32 is true float32 everywhere; tf32 and bf16 let CUDA matmuls use TF32."""
    if device.type != "cuda":
        return
    fast = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast on CUDA when asked for; otherwise nothing changes (fp32)."""
    enabled = precision == "bf16" and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
