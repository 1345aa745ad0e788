"""The machine training runs on: which device to use, what to call it, what versions it runs.

    device = resolve_device("cuda")      # an error line, not a traceback, without a GPU
    device_name(device)                  # 'NVIDIA H100 80GB HBM3 (CUDA_VISIBLE_DEVICES=3)'
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

import torch

from ..errors import HpsearchError


def resolve_device(device: str | None) -> torch.device:
    """The device to train on; a CUDA request without a visible GPU is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise HpsearchError(f"--device: unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise HpsearchError(
            f"--device {device}: no CUDA device is visible (torch.cuda.is_available() is False); "
            "use --device cpu"
        )
    return chosen


GPU_SHARE_VARIABLE = "HPSEARCH_GPU_SHARE"  # how many workers the launcher put on this worker's GPU


def workers_sharing_the_gpu() -> int:
    """Workers that share this worker's GPU (`--per-gpu M` sets M); 1 when run alone."""
    try:
        return max(1, int(os.environ.get(GPU_SHARE_VARIABLE, "1")))
    except ValueError:
        return 1


def device_name(device: torch.device) -> str:
    """What ran a trial, e.g. 'NVIDIA H100 80GB HBM3 (CUDA_VISIBLE_DEVICES=3)'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{name} (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else name


def devices() -> list[str]:
    """'cpu' and every visible GPU, e.g. ['cpu', 'cuda:0 NVIDIA H100 80GB HBM3']."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return found


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str | None]:
    """The versions a bug report (and each launch's row) records."""
    return {
        "hpsearch": package_version("hpsearch"),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "optuna": package_version("optuna"),
        "optuna-dashboard": package_version("optuna-dashboard"),
        "sqlalchemy": package_version("sqlalchemy"),
        "alembic": package_version("alembic"),
        "cuda": None if torch.version.cuda is None else str(torch.version.cuda),
    }
