"""Readers for the standard files of MNIST, Fashion-MNIST and CIFAR-10.

* MNIST / Fashion-MNIST: the IDX files `train-images-idx3-ubyte[.gz]` and
  `train-labels-idx1-ubyte[.gz]`, looked for in `DIR/mnist/`, `DIR/MNIST/raw/` or `DIR/`.
* CIFAR-10: the python archive `cifar-10-python.tar.gz` or its `cifar-10-batches-py/` folder.

Every failure is a DataError naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FOLDER = "cifar-10-batches-py"


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


def find_mnist(name: str, root: Path) -> Path:
    layouts = {"mnist": ["mnist", "MNIST/raw"], "fashion-mnist": ["fashion-mnist", "FashionMNIST/raw"]}
    for folder in [root / sub for sub in layouts[name]] + [root]:
        if all(_present(folder / f) for f in _MNIST_FILES):
            return folder
    wanted = " and ".join(f"{f}.gz" for f in _MNIST_FILES)
    raise DataError(
        f"data: {name} needs {wanted} in {root}/{layouts[name][0]}/ (or {root}/); "
        "download them there or point --data-dir / $HPSEARCH_DATA at their folder"
    )


def find_cifar10(root: Path) -> Path:
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


def mnist_tensors(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder / _MNIST_FILES[0])
    labels = read_idx(folder / _MNIST_FILES[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: expected images [N, H, W] and N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def cifar10_tensors(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_cifar10(path)
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))
