"""Datasets as tensors, split once into training and validation sets.

    data = load_dataset(spec.data, metric="accuracy", data_dir="~/datasets").to("cuda")

* `digits` — the UCI handwritten digits (1,797 8x8 images, 10 classes), shipped inside
  hpsearch, so a fresh install has a real problem to search on.
* `linear` — the regression problem y = 2x + 1 + noise.
* `mnist`, `fashion-mnist` — the standard IDX files (`train-images-idx3-ubyte[.gz]`,
  `train-labels-idx1-ubyte[.gz]`); `cifar10` — the standard python archive
  (`cifar-10-python.tar.gz` or its `cifar-10-batches-py/` folder). Looked for under the data
  directory: `--data-dir`, then the study's `data.dir`, then `$HPSEARCH_DATA`, then `./data`.
* `synthetic-mnist`, `synthetic-cifar10` — generated, same shapes, for benchmarks.
* `package.module:factory` — a user's function returning `(x, y)` or
  `(x_train, y_train, x_val, y_val)` (tensors or arrays); integer labels make a
  classification problem, floating-point targets a regression one.

The validation split is a fixed function of the data (not of any trial), and each epoch's
batch order is a fixed function of the study's data seed and the epoch, so every trial, in
either engine, sees the same batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from ..config.factories import load_factory
from ..errors import DataError
from .readers import cifar10_tensors, find_cifar10, find_mnist, mnist_tensors

if TYPE_CHECKING:
    from ..config.spec import DataSection

_PACKAGED = Path(__file__).parent / "datasets"
_SPLIT_SEED = 20_240_601  # the validation split never changes between runs or trials
_SYNTHETIC_SIZES = {"synthetic-mnist": ((1, 28, 28), 60_000), "synthetic-cifar10": ((3, 32, 32), 50_000)}


@dataclass(frozen=True)
class Dataset:
    """Training and validation tensors on one device."""

    name: str
    task: str  # "classification" or "regression"
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def output_size(self) -> int:
        """Logits per example (classification) or targets per example (regression)."""
        if self.num_classes is not None:
            return self.num_classes
        return int(self.y_train[0].numel())

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device: str | torch.device) -> "Dataset":
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
        )


def resolve_data_dir(section: "DataSection", data_dir: str | None = None) -> Path:
    chosen = data_dir or section.dir or os.environ.get("HPSEARCH_DATA") or "data"
    return Path(chosen).expanduser()


def load_dataset(
    section: "DataSection", metric: str, data_dir: str | None = None
) -> Dataset:
    """Load, split and check a study's dataset (on the CPU; move it with `.to`)."""
    name = section.name
    if name == "digits":
        x, y = _digits()
    elif name == "linear":
        x, y = _linear(int(section.options.get("size", 1000)))
    elif name in ("mnist", "fashion-mnist"):
        x, y = mnist_tensors(find_mnist(name, resolve_data_dir(section, data_dir)))
    elif name == "cifar10":
        x, y = cifar10_tensors(find_cifar10(resolve_data_dir(section, data_dir)))
    elif name in _SYNTHETIC_SIZES:
        shape, size = _SYNTHETIC_SIZES[name]
        size = section.limit or int(section.options.get("size", size))
        x, y = synthetic_images(size, shape, classes=10)
    else:
        return _user_dataset(section, metric)
    return _finish(name, x, y, section, metric)


def check_available(section: "DataSection", data_dir: str | None = None) -> None:
    """Fail early, with the files expected and where, if a file-backed dataset is missing."""
    if section.name in ("mnist", "fashion-mnist"):
        find_mnist(section.name, resolve_data_dir(section, data_dir))
    elif section.name == "cifar10":
        find_cifar10(resolve_data_dir(section, data_dir))


def batch_order(
    n: int, batch_size: int, data_seed: int, epoch: int, device: torch.device | str
) -> Iterator[torch.Tensor]:
    """The index batches of one epoch: a permutation fixed by (data_seed, epoch)."""
    generator = torch.Generator().manual_seed(data_seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).to(device)
    return iter(order.split(batch_size))


def synthetic_images(
    size: int, shape: Sequence[int], classes: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable stand-in images: a smooth template per class, scaled and drowned in noise."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    coarse = torch.randn(classes, channels, max(2, height // 4), max(2, width // 4), generator=generator)
    templates = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    y = torch.randint(0, classes, (size,), generator=generator)
    scale = 0.5 + torch.rand(size, 1, 1, 1, generator=generator)
    noise = torch.randn(size, channels, height, width, generator=generator)
    return templates[y] * scale + 4.0 * noise, y


# -- the built-in datasets ----------------------------------------------------------------------------


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    table = np.loadtxt(_PACKAGED / "digits.csv.gz", delimiter=",", dtype=np.float32)
    x = torch.from_numpy(table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    return x, torch.from_numpy(table[:, -1].astype(np.int64))


def _linear(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(size, 1, generator=generator) * 2 - 1
    return x, 2 * x + 1 + 0.1 * torch.randn(size, 1, generator=generator)


def _user_dataset(section: "DataSection", metric: str) -> Dataset:
    factory = load_factory(section.name, "data.name", DataError)
    try:
        parts = factory(**section.options)
    except Exception as e:  # the user's code: report it, do not crash the launch
        raise DataError(f"data.name: {section.name} raised {type(e).__name__}: {e}") from None
    if not isinstance(parts, (tuple, list)) or len(parts) not in (2, 4):
        raise DataError(
            f"data.name: {section.name} must return (x, y) or (x_train, y_train, x_val, y_val), "
            f"got {type(parts).__name__}"
        )
    tensors = [torch.as_tensor(p) for p in parts]
    if len(tensors) == 2:
        return _finish(section.name, tensors[0], tensors[1], section, metric)
    x_train, y_train, x_val, y_val = tensors
    return _checked(section.name, x_train.float(), y_train, x_val.float(), y_val, metric)


def _finish(
    name: str, x: torch.Tensor, y: torch.Tensor, section: "DataSection", metric: str
) -> Dataset:
    generator = torch.Generator().manual_seed(_SPLIT_SEED)
    order = torch.randperm(len(x), generator=generator)
    if section.limit is not None:
        order = order[: section.limit]
    n_val = max(1, int(round(len(order) * section.validation_fraction)))
    if n_val >= len(order):
        raise DataError(f"data: {name} has only {len(order)} examples, too few to split")
    val, train = order[:n_val], order[n_val:]
    x = x.float()
    if x.dim() == 4:
        # Standardise each channel with training-set statistics only.
        mean = x[train].mean(dim=(0, 2, 3), keepdim=True)
        std = x[train].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        x = (x - mean) / std
    return _checked(name, x[train], y[train], x[val], y[val], metric)


def _checked(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    metric: str,
) -> Dataset:
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise DataError(
            f"data: {name} gives {len(x_train)} inputs for {len(y_train)} targets "
            f"(validation: {len(x_val)} for {len(y_val)})"
        )
    if y_train.dtype.is_floating_point:
        if metric == "accuracy":
            raise DataError(
                f"study.metric: accuracy needs integer class labels, but data {name} has "
                f"floating-point targets; set metric = \"mse\" for a regression problem"
            )
        y_train, y_val = (y.float().reshape(len(y), -1) for y in (y_train, y_val))
        return Dataset(name, "regression", x_train.float(), y_train, x_val.float(), y_val)
    if metric == "mse":
        raise DataError(
            f"study.metric: mse needs regression targets, but data {name} has integer "
            f"labels; use accuracy or loss"
        )
    y_train, y_val = y_train.long(), y_val.long()
    classes = int(max(int(y_train.max()), int(y_val.max()))) + 1
    return Dataset(name, "classification", x_train, y_train, x_val, y_val, num_classes=classes)
