"""Datasets: the bundled digits, IDX and CIFAR-10 readers on tiny files, splits and batches."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsearch.config.batches import resolve_batch_size
from hpsearch.config.spec import DataSection
from hpsearch.errors import DataError
from hpsearch.training.data import batch_order, load_dataset
from hpsearch.training.readers import read_cifar10, read_idx


def section(**values: object) -> DataSection:
    return DataSection(**values)  # type: ignore[arg-type]


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_mnist(folder: Path, n: int = 50, compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", images, compress)
    write_idx(folder / "train-labels-idx1-ubyte", labels, compress)
    return images, labels


def cifar_batches(n: int = 8) -> dict[str, dict[bytes, object]]:
    rng = np.random.default_rng(1)
    return {
        f"data_batch_{i}": {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, size=n))}
        for i in range(1, 6)
    }


def test_bundled_digits() -> None:
    data = load_dataset(section(name="digits"), "accuracy")
    assert data.task == "classification" and data.num_classes == 10
    assert data.x_train.shape[1:] == (1, 8, 8) and len(data.x_train) + len(data.x_val) == 1797
    assert len(data.x_val) == round(1797 * 0.2)
    again = load_dataset(section(name="digits"), "accuracy")
    assert torch.equal(data.x_val, again.x_val)  # the split never changes
    assert abs(float(data.x_train.mean())) < 1e-5  # standardised with training statistics


def test_limit_and_validation_fraction() -> None:
    data = load_dataset(section(name="digits", limit=100, validation_fraction=0.3), "accuracy")
    assert (len(data.x_train), len(data.x_val)) == (70, 30)


def test_linear_regression_data() -> None:
    data = load_dataset(section(name="linear"), "mse")
    assert data.task == "regression" and data.output_size == 1
    slope, intercept = np.polyfit(data.x_train[:, 0].numpy(), data.y_train[:, 0].numpy(), 1)
    assert slope == pytest.approx(2, abs=0.05) and intercept == pytest.approx(1, abs=0.05)


def test_idx_reader_raw_and_gzip(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array, compress=False)
    write_idx(tmp_path / "b", array, compress=True)
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "b.gz"), array)
    assert np.array_equal(read_idx(tmp_path / "b"), array)  # finds b.gz


def test_idx_reader_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01hello")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    array = np.zeros((4, 5), dtype=np.uint8)
    write_idx(tmp_path / "short", array, compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DataError, match=r"IDX header says \(4, 5\) \(20 bytes of data\), but the file holds 17"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw", "."])
def test_mnist_from_its_usual_folders(tmp_path: Path, layout: str) -> None:
    images, labels = write_mnist(tmp_path / "data" / layout)
    data = load_dataset(section(name="mnist", dir=str(tmp_path / "data"), validation_fraction=0.2), "accuracy")
    assert data.x_train.shape[1:] == (1, 28, 28) and len(data.x_train) == 40 and len(data.x_val) == 10
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(labels.tolist())


def test_fashion_mnist_and_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "env" / "fashion-mnist", n=30, compress=False)
    monkeypatch.setenv("HPSEARCH_DATA", str(tmp_path / "env"))
    assert len(load_dataset(section(name="fashion-mnist"), "accuracy").x_train) == 24
    write_mnist(tmp_path / "flag" / "fashion-mnist", n=20)
    assert len(load_dataset(section(name="fashion-mnist"), "accuracy", data_dir=str(tmp_path / "flag")).x_train) == 16


def test_missing_files_name_what_is_expected_and_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(section(name="mnist", dir=str(tmp_path / "nowhere")), "accuracy")
    assert str(caught.value) == (
        f"data: mnist needs train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz in "
        f"{tmp_path}/nowhere/mnist/ (or {tmp_path}/nowhere/); download them there or point "
        "--data-dir / $HPSEARCH_DATA at their folder"
    )
    with pytest.raises(DataError, match=r"data: cifar10 needs cifar-10-python.tar.gz \(or its cifar-10-batches-py/ folder\)"):
        load_dataset(section(name="cifar10", dir=str(tmp_path)), "accuracy")


def test_cifar10_from_archive_and_folder(tmp_path: Path) -> None:
    batches = cifar_batches()
    archive = tmp_path / "archive" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, batch in batches.items():
            raw = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    folder = tmp_path / "folder" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    x_a, y_a = read_cifar10(archive)
    x_f, y_f = read_cifar10(folder)
    assert x_a.shape == (40, 3, 32, 32) and np.array_equal(x_a, x_f) and np.array_equal(y_a, y_f)
    data = load_dataset(section(name="cifar10", dir=str(tmp_path / "folder")), "accuracy")
    assert data.x_train.shape[1:] == (3, 32, 32) and data.num_classes <= 10
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="CIFAR-10 batch"):
        read_cifar10(folder)


def test_synthetic_datasets_are_deterministic() -> None:
    a = load_dataset(section(name="synthetic-cifar10", limit=200), "accuracy")
    b = load_dataset(section(name="synthetic-cifar10", limit=200), "accuracy")
    assert a.x_train.shape == (160, 3, 32, 32) and torch.equal(a.x_train, b.x_train)
    assert load_dataset(section(name="synthetic-mnist", limit=100), "accuracy").x_train.shape[1:] == (1, 28, 28)


def test_user_dataset_factory(tmp_path: Path) -> None:
    (tmp_path / "mydata.py").write_text(
        "import torch\n"
        "def make(n=60):\n"
        "    x = torch.randn(n, 5)\n"
        "    return x, (x.sum(1) > 0).long()\n"
        "def regression():\n"
        "    x = torch.randn(40, 3)\n"
        "    return x[:30], x[:30, :1], x[30:], x[30:, :1]\n"
        "def broken():\n"
        "    raise RuntimeError('no data today')\n"
    )
    data = load_dataset(section(name="mydata:make", options={"n": 80}), "accuracy")
    assert data.task == "classification" and len(data.x_train) + len(data.x_val) == 80
    data = load_dataset(section(name="mydata:regression"), "mse")
    assert data.task == "regression" and len(data.x_val) == 10
    with pytest.raises(DataError, match=r"study.metric: accuracy needs integer class labels, but data mydata:regression"):
        load_dataset(section(name="mydata:regression"), "accuracy")
    with pytest.raises(DataError, match="data.name: mydata:broken raised RuntimeError: no data today"):
        load_dataset(section(name="mydata:broken"), "accuracy")
    with pytest.raises(DataError, match="data.name: cannot import module 'nomodule'"):
        load_dataset(section(name="nomodule:make"), "accuracy")


def test_batch_order_is_a_function_of_seed_and_epoch() -> None:
    first = torch.cat(list(batch_order(100, 32, 0, 0, "cpu")))
    assert sorted(first.tolist()) == list(range(100))
    assert torch.equal(first, torch.cat(list(batch_order(100, 32, 0, 0, "cpu"))))
    assert not torch.equal(first, torch.cat(list(batch_order(100, 32, 0, 1, "cpu"))))
    assert [len(b) for b in batch_order(100, 32, 0, 0, "cpu")] == [32, 32, 32, 4]
    assert resolve_batch_size("full", 100) == 100 and resolve_batch_size(500, 100) == 100
