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
    batches: list[tuple[np.ndarray, np.ndarray]] = []
    names = [f"data_batch_{i}" for i in range(1, 6)]
    try:
        if path.is_dir():
            for n in names:
                with open(path / n, "rb") as f:
                    batches.append(_cifar_batch(f, path / n))
        else:
            with tarfile.open(path, "r:gz") as archive:
                for n in names:
                    member = archive.extractfile(f"{_CIFAR_FOLDER}/{n}")
                    if member is None:
                        raise FileNotFoundError(n)
                    batches.append(_cifar_batch(member, Path(f"{path}:{_CIFAR_FOLDER}/{n}")))
    except (KeyError, FileNotFoundError) as e:
        raise DataError(f"{path}: CIFAR-10 batch {e} is missing; expected {', '.join(names)}") from None
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"{path}: cannot read the CIFAR-10 archive: {e}; download it again") from None
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def _cifar_batch(file: Any, where: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch: a pickled dict of `data` [N, 3072] bytes and N `labels` in 0..9."""
    try:
        batch = pickle.load(file, encoding="bytes")
    except Exception as e:  # a damaged pickle fails with almost any error, depending on its bytes
        raise DataError(f"{where}: not a CIFAR-10 batch, the file is damaged ({type(e).__name__}: {e}); download the archive again") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = np.asarray(batch.get(b"labels", [])) if isinstance(batch, dict) else np.asarray([])
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        shape = list(data.shape) if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(
            f"{where}: not a CIFAR-10 batch: expected data [N, 3072] and N labels, got data {shape} and "
            f"{labels.size} labels; download the archive again"
        )
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: not a CIFAR-10 batch: labels must be 0..9; download the archive again")
    return data.reshape(-1, 3, 32, 32), labels


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
