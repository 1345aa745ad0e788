"""What this machine runs: versions and devices, for `hpsearch env` and each launch's row."""

from __future__ import annotations

import platform
from importlib import metadata


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str | None]:
    import torch

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


def devices() -> list[str]:
    """'cpu' and every visible GPU, e.g. ['cpu', 'cuda:0 NVIDIA H100 80GB HBM3']."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return found
