"""Datasets: the bundled digits, IDX and CIFAR-10 readers on tiny files, splits and batches."""

from __future__ import annotations

import gzip
import io
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsearch.config.batches import resolve_batch_size
from hpsearch.config.spec import DataSection, parse_study_file
from hpsearch.errors import DataError, SpecError
from hpsearch.training.data import _digits, batch_order, load_dataset
from hpsearch.training.readers import read_cifar10, read_idx
from hpsearch.training.splits import BatchOrder, limited_order, split_indices, standardize
from tests.conftest import TINY_STUDY


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


def write_cifar_folder(root: Path) -> Path:
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, batch in cifar_batches().items():
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


CORRUPTIONS = {  # what a broken download or a full disk leaves behind
    "truncated": lambda raw: raw[: len(raw) // 2],
    "garbage": lambda raw: b"\x00garbage\xff" * 64,
    "empty": lambda raw: b"",
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_a_corrupt_cifar_batch_is_one_line_naming_the_file(damage, write_study, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hpsearch.cli import cli

    folder = write_cifar_folder(tmp_path / "data")
    broken = folder / "data_batch_2"
    broken.write_bytes(CORRUPTIONS[damage](broken.read_bytes()))
    spec = write_study(TINY_STUDY.replace('name = "digits"\nlimit = 300', f'name = "cifar10"\ndir = "{tmp_path / "data"}"').replace('name = "mlp"\nhidden = 16', 'name = "mlp"'))
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", f"sqlite:///{tmp_path / 'h.db'}", "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {spec}: {broken}: not a CIFAR-10 batch, the file is damaged (") and line.endswith("); download the archive again"), line
    assert not (tmp_path / "h.db").exists()  # before anything is written


def test_a_truncated_idx_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), dtype=np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"IDX header says \(4, 28, 28\) \(3136 bytes of data\), but the file holds 3036; the file is truncated or corrupt$"):
        read_idx(path)


def test_a_truncated_cifar_archive_is_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, batch in cifar_batches().items():
            raw = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    archive.write_bytes(archive.read_bytes()[:-4000])
    with pytest.raises(DataError, match=rf"^{re.escape(str(archive))}: cannot read the CIFAR-10 archive: .*; download it again$"):
        read_cifar10(archive)


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
    with pytest.raises(DataError, match=r"data.name: mydata:broken raised RuntimeError: no data today \(at mydata.py:9 in broken\)"):
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


# -- every form of a data factory honours limit and the split fractions, or says why not ----------

FACTORY_FORMS = '''
import torch
from torch.utils.data import Dataset, IterableDataset

def tensors(n=100):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()

READS = []

class Items(Dataset):
    def __init__(self, n=100):
        self.x, self.y = tensors(n)
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        READS.append(i)
        return self.x[i].numpy(), int(self.y[i])

def pair():
    return tensors()

def four():
    x, y = tensors(120)
    return x[:100], y[:100], x[100:], y[100:]

def six():
    x, y = tensors(130)
    return x[:100], y[:100], x[100:120], y[100:120], x[120:], y[120:]

def items():
    READS.clear()
    return Items()

def datasets():
    return Items(100), Items(20)

def mapping():
    x, y = tensors(130)
    return {"train": (x[:100], y[:100]), "test": (x[100:], y[100:])}

class Stream(IterableDataset):
    def __iter__(self):
        yield from ()

def stream():
    return Stream()

def three():
    return 1, 2, 3

def broken():
    raise RuntimeError("no data today")
'''


@pytest.fixture
def forms(tmp_path: Path) -> str:
    (tmp_path / "forms.py").write_text(FACTORY_FORMS)
    return "forms"


@pytest.mark.parametrize("factory", ["pair", "items"])
def test_data_without_a_validation_set_is_split_and_limited(forms, factory) -> None:
    data = load_dataset(section(name=f"forms:{factory}", limit=50, validation_fraction=0.3, test_fraction=0.1), "accuracy", with_test=True)
    assert data.sizes == {"train": 30, "validation": 15, "test": 5}
    assert load_dataset(section(name=f"forms:{factory}", limit=50, validation_fraction=0.3, test_fraction=0.1), "accuracy").x_test is None
    x, y = __import__("forms").tensors()
    split = split_indices(100, 0.3, 0.1, 50)
    assert torch.equal(data.x_train, x[split.train]) and torch.equal(data.y_val, y[split.validation])
    assert torch.equal(data.x_test, x[split.test])
    if factory == "items":
        assert sorted(__import__("forms").READS) == sorted(split.train.tolist() + split.validation.tolist() + split.test.tolist())  # only what is kept is read


@pytest.mark.parametrize("factory, test", [("four", 0), ("six", 10), ("datasets", 0), ("mapping", 30)])
def test_data_with_its_own_sets_keeps_them_and_limit_caps_training(forms, factory, test) -> None:
    data = load_dataset(section(name=f"forms:{factory}", limit=40), "accuracy", with_test=True)
    validation = 100 if factory == "mapping" else 20
    if factory == "mapping":  # no validation set of its own: it is split off the training set
        assert data.sizes == {"train": 32, "validation": 8, "test": 30}
    else:
        assert data.sizes == {"train": 40, "validation": validation, "test": test}
    x, _ = __import__("forms").tensors(130 if factory in ("six", "mapping") else 120)
    if factory in ("four", "six"):
        assert torch.equal(data.x_train, x[:100][limited_order(100, 40)])


@pytest.mark.parametrize("factory, key", [("four", "validation_fraction"), ("six", "test_fraction"), ("datasets", "validation_fraction")])
def test_fractions_that_cannot_apply_are_errors(forms, factory, key) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(section(name=f"forms:{factory}", **{key: 0.2}), "accuracy")
    assert str(caught.value) == (
        f"data.{key}: data forms:{factory} returns its own validation set, so {key} does not apply; "
        "remove it (data.limit still caps the training set)"
    )
    with pytest.raises(DataError, match="data.test_fraction: data forms:mapping returns its own test set; remove test_fraction"):
        load_dataset(section(name="forms:mapping", test_fraction=0.2), "accuracy")


def test_factory_forms_that_cannot_work_say_why(forms) -> None:
    with pytest.raises(DataError, match="an IterableDataset has no length to split or hold on the device"):
        load_dataset(section(name="forms:stream"), "accuracy")
    with pytest.raises(DataError, match=r"data.name: forms:three returned 3 values; return \(x, y\), "):
        load_dataset(section(name="forms:three"), "accuracy")
    with pytest.raises(DataError, match=r"data.name: forms:broken raised RuntimeError: no data today \(at forms.py:\d+ in broken\)"):
        load_dataset(section(name="forms:broken"), "accuracy")


def test_builtin_data_holds_a_test_set_out_of_the_same_permutation() -> None:
    plain = load_dataset(section(name="digits", limit=200), "accuracy")
    held = load_dataset(section(name="digits", limit=200, test_fraction=0.1), "accuracy", with_test=True)
    assert held.sizes == {"train": 140, "validation": 40, "test": 20} and plain.sizes["test"] == 0
    with pytest.raises(SpecError, match="validation_fraction \\+ test_fraction must be < 1"):
        parse_study_file(TINY_STUDY.replace("limit = 300", "limit = 300\nvalidation_fraction = 0.5\ntest_fraction = 0.5"), "x.toml")


def test_the_public_pieces_are_the_ones_training_uses() -> None:
    data = load_dataset(section(name="digits", limit=300, split_seed=4), "accuracy")
    x, y = _digits()
    split = split_indices(len(x), 0.2, None, 300, 4)
    assert torch.equal(standardize(x, split.train)[split.train], data.x_train)
    assert torch.equal(y[split.validation], data.y_val)
    sampler = BatchOrder(data.n_train, 64, 3)
    for epoch in range(2):
        assert [list(b) for b in sampler] == [b.tolist() for b in batch_order(data.n_train, 64, 3, epoch)]
    assert len(sampler) == 4 and len(BatchOrder(10, "full", 0)) == 1


MISUSED_FORMS = '''
import sys
import numpy as np
import torch

def words():
    return np.zeros((20, 3), dtype="float32"), np.array(["cat", "dog"] * 10)

def word_list():
    return torch.zeros(20, 3), ["cat", "dog"] * 10

class Named(torch.utils.data.Dataset):
    def __len__(self):
        return 20
    def __getitem__(self, i):
        return torch.zeros(3), "cat"

def named():
    return Named()

def uneven():
    return torch.zeros(20, 3), torch.zeros(18, dtype=torch.long)

def uneven_validation():
    return torch.zeros(20, 3), torch.zeros(20, dtype=torch.long), torch.zeros(5, 3), torch.zeros(4, dtype=torch.long)

def exits():
    sys.exit(3)
'''


@pytest.mark.parametrize(
    "factory, message",
    [
        ("words", "data.name: misused:words [0:2]: the targets are words ('cat', 'dog', 'cat', ...), not numbers; number the classes 0..C-1 first, e.g. classes, y = numpy.unique(y, return_inverse=True)"),
        ("word_list", "data.name: misused:word_list [0:2]: the targets are words ('cat', 'dog', 'cat', ...), not numbers; number the classes 0..C-1 first, e.g. classes, y = numpy.unique(y, return_inverse=True)"),
        ("named", "misused:named: the targets of the Dataset (item 0: 'cat') are words ('cat', ...), not numbers; number the classes 0..C-1 first, e.g. classes, y = numpy.unique(y, return_inverse=True)"),
        ("uneven", "data.name: misused:uneven [0:2]: 20 inputs for 18 targets; return one target per input, x and y of the same length"),
        ("uneven_validation", "data.name: misused:uneven_validation [2:4]: 5 inputs for 4 targets; return one target per input, x and y of the same length"),
        ("exits", "data.name: misused:exits called sys.exit(3) (at misused.py:28 in exits); it must return (or raise an exception), not exit the process"),
    ],
)
def test_misused_factories_say_what_to_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str, message: str) -> None:
    (tmp_path / "misused.py").write_text(MISUSED_FORMS)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(section(name=f"misused:{factory}", validation_fraction=0.2), "accuracy")
    shown = re.sub(r"\(item \d+:", "(item 0:", str(caught.value))  # a Dataset is read in the split's order
    assert shown == message and "\n" not in shown
