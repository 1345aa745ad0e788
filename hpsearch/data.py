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

import gzip
import os
import pickle
import struct
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from .errors import DataError
from .factories import load_factory

if TYPE_CHECKING:
    from .spec import DataSection

_PACKAGED = Path(__file__).parent / "datasets"
_SPLIT_SEED = 20_240_601  # the validation split never changes between runs or trials
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FOLDER = "cifar-10-batches-py"
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
        x, y = _mnist(_find_mnist(name, resolve_data_dir(section, data_dir)))
    elif name == "cifar10":
        x, y = _cifar10(_find_cifar10(resolve_data_dir(section, data_dir)))
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
        _find_mnist(section.name, resolve_data_dir(section, data_dir))
    elif section.name == "cifar10":
        _find_cifar10(resolve_data_dir(section, data_dir))


def batch_order(
    n: int, batch_size: int, data_seed: int, epoch: int, device: torch.device | str
) -> Iterator[torch.Tensor]:
    """The index batches of one epoch: a permutation fixed by (data_seed, epoch)."""
    generator = torch.Generator().manual_seed(data_seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).to(device)
    return iter(order.split(batch_size))


def resolve_batch_size(batch_size: int | str, n_train: int) -> int:
    """A config's batch size as a number: "full" (or anything larger) is the whole set."""
    if batch_size == "full":
        return n_train
    return min(int(batch_size), n_train)


# -- readers -------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    kinds = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    kind, ndim = raw[2], raw[3]
    if kind not in kinds:
        raise DataError(f"{path}: unknown IDX element type 0x{kind:02x}")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(kinds[kind])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header says {dims} ({expected} bytes of data), "
            f"but the file holds {len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_cifar10(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The five CIFAR-10 training batches from the python archive or its extracted folder."""
    batches: list[dict[bytes, Any]] = []
    names = [f"data_batch_{i}" for i in range(1, 6)]
    try:
        if path.is_dir():
            for n in names:
                with open(path / n, "rb") as f:
                    batches.append(pickle.load(f, encoding="bytes"))
        else:
            with tarfile.open(path, "r:gz") as archive:
                for n in names:
                    member = archive.extractfile(f"{_CIFAR_FOLDER}/{n}")
                    if member is None:
                        raise KeyError(n)
                    batches.append(pickle.load(member, encoding="bytes"))
    except (KeyError, FileNotFoundError) as e:
        raise DataError(f"{path}: CIFAR-10 batch {e} is missing; expected {', '.join(names)}") from None
    except (OSError, pickle.UnpicklingError, EOFError, tarfile.TarError) as e:
        raise DataError(f"{path}: cannot read the CIFAR-10 archive: {e}") from None
    x = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[b"labels"]) for b in batches])
    return x, y


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


# -- the datasets ----------------------------------------------------------------------------


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    table = np.loadtxt(_PACKAGED / "digits.csv.gz", delimiter=",", dtype=np.float32)
    x = torch.from_numpy(table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    return x, torch.from_numpy(table[:, -1].astype(np.int64))


def _linear(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(size, 1, generator=generator) * 2 - 1
    return x, 2 * x + 1 + 0.1 * torch.randn(size, 1, generator=generator)


def _find_mnist(name: str, root: Path) -> Path:
    layouts = {"mnist": ["mnist", "MNIST/raw"], "fashion-mnist": ["fashion-mnist", "FashionMNIST/raw"]}
    for folder in [root / sub for sub in layouts[name]] + [root]:
        if all(_present(folder / f) for f in _MNIST_FILES):
            return folder
    wanted = " and ".join(f"{f}.gz" for f in _MNIST_FILES)
    raise DataError(
        f"data: {name} needs {wanted} in {root}/{layouts[name][0]}/ (or {root}/); "
        "download them there or point --data-dir / $HPSEARCH_DATA at their folder"
    )


def _find_cifar10(root: Path) -> Path:
    for folder in (root, root / "cifar10", root / "cifar-10"):
        if (folder / _CIFAR_ARCHIVE).is_file():
            return folder / _CIFAR_ARCHIVE
        if (folder / _CIFAR_FOLDER / "data_batch_1").is_file():
            return folder / _CIFAR_FOLDER
    raise DataError(
        f"data: cifar10 needs {_CIFAR_ARCHIVE} (or its {_CIFAR_FOLDER}/ folder) in {root}/ "
        f"or {root}/cifar10/; download it there or point --data-dir / $HPSEARCH_DATA at it"
    )


def _present(path: Path) -> bool:
    return path.is_file() or path.with_name(path.name + ".gz").is_file()


def _read_bytes(path: Path) -> bytes:
    if not path.is_file() and path.with_name(path.name + ".gz").is_file():
        path = path.with_name(path.name + ".gz")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None


def _mnist(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder / _MNIST_FILES[0])
    labels = read_idx(folder / _MNIST_FILES[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: expected images [N, H, W] and N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _cifar10(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_cifar10(path)
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


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
