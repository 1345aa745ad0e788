"""Datasets as tensors, split once into training, validation and (optionally) test sets.

    data = load_study_data(spec, data_dir="~/datasets").to("cuda")

* `digits` — the UCI handwritten digits (1,797 8x8 images, 10 classes), shipped inside
  hpsearch, so a fresh install has a real problem to search on.
* `linear` — the regression problem y = 2x + 1 + noise.
* `mnist`, `fashion-mnist` — the standard IDX files (`train-images-idx3-ubyte[.gz]`,
  `train-labels-idx1-ubyte[.gz]`); `cifar10` — the standard python archive
  (`cifar-10-python.tar.gz` or its `cifar-10-batches-py/` folder). Looked for under the data
  directory: `--data-dir`, then the study's `data.dir`, then `$HPSEARCH_DATA`, then `./data`.
* `synthetic-mnist`, `synthetic-cifar10` — generated, same shapes, for benchmarks.
* `package.module:factory` — a user's function (`user_data.py` lists what it may return);
  integer labels make a classification problem, floating-point targets a regression one.

Every form honours the [data] keys or refuses them: data without its own validation set is
split by `split_indices` (`limit` examples at most, `validation_fraction` of them for
validation, `test_fraction` for test); data with its own validation set keeps it whole,
`limit` caps the training set, and `validation_fraction` / `test_fraction` are errors. Images
are standardised per channel with training-set statistics (`splits.standardize`). The split
is a fixed function of the data and `split_seed` (not of any trial), and each epoch's batch
order a fixed function of the study's data seed and the epoch, so every trial, in either
engine, sees the same batches. The test set is loaded only when asked for (`with_test`):
workers never see it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..errors import DataError
from .losses import Loss, default_loss, resolve_loss
from .readers import cifar10_tensors, find_cifar10, find_mnist, mnist_tensors
from .splits import batch_order, channel_stats, limited_order, split_indices
from .user_data import Pieces, examples, factory_pieces, size

if TYPE_CHECKING:
    from ..config.spec import DataSection, StudySpec

__all__ = ["Dataset", "batch_order", "check_available", "load_dataset", "load_study_data", "synthetic_images"]
_PACKAGED = Path(__file__).parent / "datasets"
_SYNTHETIC_SIZES = {"synthetic-mnist": ((1, 28, 28), 60_000), "synthetic-cifar10": ((3, 32, 32), 50_000)}


@dataclass(frozen=True)
class Dataset:
    """Training and validation tensors on one device (and test tensors, when asked for)."""

    name: str
    task: str  # "classification" or "regression"
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int | None = None
    loss: Loss = None  # type: ignore[assignment]  # None: the default for the task
    x_test: torch.Tensor | None = None  # only with load_dataset(with_test=True)
    y_test: torch.Tensor | None = None
    standardization: tuple[list[float], list[float]] | None = None  # the per-channel mean and std applied

    def __post_init__(self) -> None:
        if self.loss is None:
            object.__setattr__(self, "loss", default_loss(self.task))

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

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "validation": len(self.x_val), "test": 0 if self.x_test is None else len(self.x_test)}

    def to(self, device: str | torch.device) -> "Dataset":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
        )

    def test_set(self) -> "Dataset":
        """The test examples in the validation slots, to score a trained model on them."""
        if self.x_test is None or self.y_test is None:
            raise DataError(f"data: {self.name} has no test set; set data.test_fraction or return one from the factory")
        return replace(self, x_val=self.x_test, y_val=self.y_test, x_test=None, y_test=None)


def resolve_data_dir(section: "DataSection", data_dir: str | None = None) -> Path:
    chosen = data_dir or section.dir or os.environ.get("HPSEARCH_DATA") or "data"
    return Path(chosen).expanduser()


def load_dataset(section: "DataSection", metric: str, data_dir: str | None = None, *, with_test: bool = False) -> Dataset:
    """Load, split and check a study's dataset (on the CPU; move it with `.to`)."""
    name = section.name
    if name == "digits":
        pieces = Pieces(_digits())
    elif name == "linear":
        pieces = Pieces(_linear(int(section.options.get("size", 1000))))
    elif name in ("mnist", "fashion-mnist"):
        pieces = Pieces(mnist_tensors(find_mnist(name, resolve_data_dir(section, data_dir))))
    elif name == "cifar10":
        pieces = Pieces(cifar10_tensors(find_cifar10(resolve_data_dir(section, data_dir))))
    elif name in _SYNTHETIC_SIZES:
        shape, default = _SYNTHETIC_SIZES[name]
        pieces = Pieces(synthetic_images(section.limit or int(section.options.get("size", default)), shape, classes=10))
    else:
        pieces = factory_pieces(section)
    return _assemble(section, pieces, metric, with_test)


def load_study_data(spec: "StudySpec", data_dir: str | None = None, *, with_test: bool = False) -> Dataset:
    """A study's dataset together with the study's loss, checked against its targets."""
    data = load_dataset(spec.data, spec.metric, data_dir, with_test=with_test)
    return replace(data, loss=resolve_loss(spec.train.loss, data.task, spec.train.loss_options, data=f"data {data.name}"))


def check_available(section: "DataSection", data_dir: str | None = None) -> None:
    """Fail early, with the files expected and where, if a file-backed dataset is missing."""
    if section.name in ("mnist", "fashion-mnist"):
        find_mnist(section.name, resolve_data_dir(section, data_dir))
    elif section.name == "cifar10":
        find_cifar10(resolve_data_dir(section, data_dir))


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


# -- limit, split, standardisation ---------------------------------------------------------------


def _assemble(section: "DataSection", pieces: Pieces, metric: str, with_test: bool) -> Dataset:
    """Apply limit, the split and the standardisation to what the data source gave."""
    name, given = section.name, section.model_fields_set
    test = None
    if pieces.validation is None:
        if pieces.test is not None and "test_fraction" in given:
            raise DataError(f"data.test_fraction: data {name} returns its own test set; remove test_fraction")
        test_fraction = section.test_fraction if pieces.test is None else None
        try:
            split = split_indices(size(pieces.train), section.validation_fraction, test_fraction, section.limit, section.split_seed)
        except DataError as e:
            raise DataError(f"{e} (data {name}); lower the fractions or raise data.limit") from None
        train = examples(pieces.train, split.train, name)
        val = examples(pieces.train, split.validation, name)
        if len(split.test):
            test = examples(pieces.train, split.test, name)
    else:
        for key in ("validation_fraction", "test_fraction"):
            if key in given:
                raise DataError(
                    f"data.{key}: data {name} returns its own validation set, so {key} does not apply; "
                    "remove it (data.limit still caps the training set)"
                )
        order = limited_order(size(pieces.train), section.limit, section.split_seed) if section.limit else None
        train = examples(pieces.train, order, name)
        val = examples(pieces.validation, None, name)
    if pieces.test is not None:
        test = examples(pieces.test, None, name)
    parts = [(x.float(), y) for x, y in [train, val] + ([test] if test is not None else [])]
    stats = None
    if section.standardize and parts[0][0].dim() == 4:
        mean, std = channel_stats(parts[0][0])
        parts = [((x - mean) / std, y) for x, y in parts]
        stats = (mean.flatten().tolist(), std.flatten().tolist())
    data = _checked(name, *parts[0], *parts[1], metric, parts[2] if len(parts) > 2 else None)
    return replace(data, standardization=stats, **({} if with_test else {"x_test": None, "y_test": None}))


def _checked(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    metric: str,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Dataset:
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise DataError(
            f"data: {name} gives {len(x_train)} inputs for {len(y_train)} targets "
            f"(validation: {len(x_val)} for {len(y_val)})"
        )
    x_test, y_test = test if test is not None else (None, None)
    if y_train.dtype.is_floating_point:
        if metric == "accuracy":
            raise DataError(
                f"study.metric: accuracy needs integer class labels, but data {name} has "
                f"floating-point targets; set metric = \"mse\" for a regression problem"
            )
        y_train, y_val = (y.float().reshape(len(y), -1) for y in (y_train, y_val))
        if y_test is not None:
            y_test = y_test.float().reshape(len(y_test), -1)
        return Dataset(name, "regression", x_train, y_train, x_val, y_val, x_test=x_test, y_test=y_test)
    if metric == "mse":
        raise DataError(
            f"study.metric: mse needs regression targets, but data {name} has integer "
            f"labels; use accuracy or loss"
        )
    y_train, y_val = y_train.long(), y_val.long()
    y_test = None if y_test is None else y_test.long()
    labels = [y for y in (y_train, y_val, y_test) if y is not None and len(y)]
    classes = max(int(y.max()) for y in labels) + 1
    return Dataset(name, "classification", x_train, y_train, x_val, y_val, num_classes=classes, x_test=x_test, y_test=y_test)
