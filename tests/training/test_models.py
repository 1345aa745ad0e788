"""The reference models' shapes, and user models named module:factory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpsearch.config.spec import ModelSection
from hpsearch.errors import ModelError
from hpsearch.training.data import Dataset
from hpsearch.training.models import cnn, linear_model, mlp, model_factory
from hpsearch.training.probes import check_vectorizable
from tests.user_code import MNIST_NET


def data_of(shape: tuple[int, ...], classes: int | None = 10) -> Dataset:
    x = torch.zeros(4, *shape)
    y = torch.zeros(4, dtype=torch.long) if classes else torch.zeros(4, 1)
    return Dataset("t", "classification" if classes else "regression", x, y, x, y, classes)


@pytest.mark.parametrize(
    "name, shape, classes, parameters",
    [
        ("linreg", (1,), None, 2),
        ("softmax", (1, 28, 28), 10, 7850),
        ("mlp", (1, 28, 28), 10, 784 * 64 + 64 + 64 * 10 + 10),
        ("mlp", (1, 8, 8), 10, 64 * 64 + 64 + 650),
        ("cnn", (3, 32, 32), 10, (3 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 4 * 4 * 10 + 10)),
        ("cnn", (1, 28, 28), 10, (9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 3 * 3 * 10 + 10)),
        ("cnn", (1, 8, 8), 10, (9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 10 + 10)),
    ],
)
def test_reference_model_shapes(name: str, shape: tuple[int, ...], classes: int | None, parameters: int) -> None:
    data = data_of(shape, classes)
    model = model_factory(ModelSection(name=name), data)()
    assert model(data.x_train).shape == (4, classes or 1)
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_model_builders_directly() -> None:
    assert [m.out_channels for m in cnn((3, 32, 32), 10) if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64]
    assert mlp((64,), 10, hidden=32)[1].out_features == 32
    assert linear_model((1,), 1)(torch.ones(2, 1)).shape == (2, 1)


def test_cnn_needs_images() -> None:
    with pytest.raises(ModelError, match=r"model.name: cnn needs images \[channels, height, width\], got inputs of shape \[1\]"):
        model_factory(ModelSection(name="cnn"), data_of((1,), None))
    with pytest.raises(ModelError, match="cnn needs images of at least 8x8, got 4x4"):
        model_factory(ModelSection(name="cnn"), data_of((1, 4, 4)))


def test_user_model_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def wide(input_shape, output_size, width=8):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[-1], width), torch.nn.Tanh(), torch.nn.Linear(width, output_size))\n"
        "def not_a_model(input_shape, output_size):\n"
        "    return 3\n"
    )
    data = data_of((5,))
    model = model_factory(ModelSection(name="mymodels:wide", options={"width": 12}), data)()
    assert model[1].out_features == 12 and model(data.x_train).shape == (4, 10)
    with pytest.raises(ModelError, match="must return a torch.nn.Module, got int"):
        model_factory(ModelSection(name="mymodels:not_a_model"), data)()
    with pytest.raises(ModelError, match="module 'mymodels' has no callable 'missing'"):
        model_factory(ModelSection(name="mymodels:missing"), data)


def test_a_model_class_is_named_directly_and_its_constructor_errors_are_its_own(tmp_path: Path) -> None:
    (tmp_path / "netmod.py").write_text(
        MNIST_NET
        + "\n\nclass Wide(torch.nn.Module):\n"
        "    def __init__(self, input_shape, output_size, width=4):\n"
        "        super().__init__()\n"
        "        if width > 100:\n"
        "            raise ValueError(f'width {width} is too wide')\n"
        "        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, width), torch.nn.Linear(width, output_size))\n"
        "    def forward(self, x):\n"
        "        return self.net(x)\n"
        "\n\ndef needs(shape, out, depth):\n"
        "    return Wide(shape, out)\n"
    )
    data = data_of((1, 8, 8))
    net = model_factory(ModelSection(name="netmod:Net"), data)()  # takes no (input_shape, output_size)
    assert type(net).__name__ == "Net" and net(data.x_train).shape == (4, 10)
    assert model_factory(ModelSection(name="netmod:Wide", options={"width": 6}), data)().net[1].out_features == 6
    with pytest.raises(ModelError) as caught:
        model_factory(ModelSection(name="netmod:Wide", options={"width": 500}), data)()
    line = MNIST_NET.count("\n") + 7
    assert str(caught.value) == f"model.name: netmod:Wide raised ValueError: width 500 is too wide (at netmod.py:{line} in __init__)"
    assert f'netmod.py", line {line}, in __init__' in caught.value.trace and "raise ValueError" in caught.value.trace
    assert "hpsearch/training" not in caught.value.trace  # the user's frames only
    with pytest.raises(ModelError, match=r"model.name: netmod:needs takes neither \(input_shape, output_size, \*\*model.options\) nor \(\*\*model.options\); its signature is \(shape, out, depth\)"):
        model_factory(ModelSection(name="netmod:needs"), data)


@pytest.mark.parametrize(
    "layers, reason",
    [
        ("torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, out)", "dropout needs per-member random masks"),
        ("torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, out)", "batch norm keeps running statistics"),
    ],
)
def test_why_a_model_cannot_train_in_cohorts_is_said_in_words(tmp_path: Path, layers: str, reason: str) -> None:
    name = f"why{abs(hash(reason)) % 1000}"
    (tmp_path / f"{name}.py").write_text(f"import torch\ndef make(shape, out):\n    return torch.nn.Sequential({layers})\n")
    data = data_of((1, 8, 8))
    assert check_vectorizable(model_factory(ModelSection(name=f"{name}:make"), data), data) == reason
    net = tmp_path / "mnistnet_why.py"
    net.write_text(MNIST_NET)
    assert check_vectorizable(model_factory(ModelSection(name="mnistnet_why:Net"), data), data) == "dropout needs per-member random masks"
