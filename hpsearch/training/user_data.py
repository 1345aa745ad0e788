"""A user's data factory (`[data] name = "package.module:factory"`) and the forms it may return.

The factory is called as `factory(**data.options)` and returns one of:

* `(x, y)` — tensors or arrays, or a map-style `torch.utils.data.Dataset` of `(input, target)`
  pairs: hpsearch holds out the validation (and test) examples, as for the built-in data;
* `(x_train, y_train, x_val, y_val)` or `(x_train, y_train, x_val, y_val, x_test, y_test)`;
* `(train, validation)` or `(train, validation, test)` — map-style Datasets;
* `{"train": ..., "validation": ..., "test": ...}` — each `(x, y)` or a Dataset; only
  `train` is required.

`data.py` decides what `limit`, `validation_fraction` and `test_fraction` do with each form.
Only the examples kept are read from a Dataset, so `limit` also bounds the reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset

from ..config.factories import load_factory, raised_in_user_code, user_traceback
from ..errors import DataError

if TYPE_CHECKING:
    from ..config.spec import DataSection

Piece = Union[tuple[torch.Tensor, torch.Tensor], TorchDataset]
FORMS = (
    "(x, y), (x_train, y_train, x_val, y_val), (x_train, y_train, x_val, y_val, x_test, y_test), "
    "a map-style torch Dataset (or 2-3 of them: train, validation, test), or a dict with "
    "'train' and optionally 'validation' and 'test'"
)


@dataclass(frozen=True)
class Pieces:
    """What a data source gives: training examples, and its own validation and test sets."""

    train: Piece
    validation: Piece | None = None
    test: Piece | None = None


def factory_pieces(section: "DataSection") -> Pieces:
    """Call the study's data factory and read its return value into Pieces."""
    factory = load_factory(section.name, "data.name", DataError)
    try:
        returned = factory(**section.options)
    except (Exception, SystemExit) as e:  # the user's code: report it as what it is, with where
        raise DataError(raised_in_user_code(e, f"data.name: {section.name}"), trace=user_traceback(e)) from None
    return pieces_of(returned, section.name)


def pieces_of(returned: Any, name: str) -> Pieces:
    where = f"data.name: {name}"
    if isinstance(returned, Mapping):
        unknown = sorted(set(returned) - {"train", "validation", "test"})
        if unknown or "train" not in returned:
            raise DataError(f"{where} returned a dict with keys {sorted(returned)}; it needs 'train' and may have 'validation' and 'test'")
        parts = {k: _piece(v, f"{where} ['{k}']") for k, v in returned.items()}
        return Pieces(parts["train"], parts.get("validation"), parts.get("test"))
    if isinstance(returned, (TorchDataset, IterableDataset)):
        return Pieces(_piece(returned, where))
    if isinstance(returned, (tuple, list)):
        if returned and all(isinstance(p, (TorchDataset, IterableDataset)) for p in returned) and len(returned) <= 3:
            return Pieces(*[_piece(p, f"{where} [{i}]") for i, p in enumerate(returned)])
        if len(returned) in (2, 4, 6):
            pairs = [_piece(tuple(returned[i : i + 2]), f"{where} [{i}:{i + 2}]") for i in range(0, len(returned), 2)]
            return Pieces(*pairs)
        raise DataError(f"{where} returned {len(returned)} values; return {FORMS}")
    raise DataError(f"{where} returned {type(returned).__name__}; return {FORMS}")


def _piece(value: Any, where: str) -> Piece:
    if isinstance(value, IterableDataset):
        raise DataError(
            f"{where}: an IterableDataset has no length to split or hold on the device; return tensors or a "
            "map-style Dataset, or train with your own loop (train.function)"
        )
    if isinstance(value, TorchDataset):
        if not hasattr(value, "__len__"):
            raise DataError(f"{where}: the Dataset has no __len__; hpsearch needs to know how many examples it holds")
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        _refuse_words(value[1], where)
        try:
            x, y = (torch.as_tensor(v) for v in value)
        except (TypeError, ValueError, RuntimeError) as e:
            raise DataError(
                f"{where}: expected tensors or arrays (x, y), got {type(value[0]).__name__}, {type(value[1]).__name__}: "
                f"{str(e).split('.')[0]}; return numeric tensors or numpy arrays"
            ) from None
        if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
            sizes = [len(t) if t.dim() else "a scalar" for t in (x, y)]
            raise DataError(f"{where}: {sizes[0]} inputs for {sizes[1]} targets; return one target per input, x and y of the same length")
        return (x, y)
    raise DataError(f"{where}: expected (x, y) or a Dataset, got {type(value).__name__}")


def _refuse_words(targets: Any, where: str, item: str = "targets") -> None:
    """Class names as targets ("cat", "dog") are a common first try; say how to number them."""
    if isinstance(targets, str | bytes):
        words = [targets]
    elif getattr(targets, "dtype", None) is not None and getattr(targets.dtype, "kind", "") in ("U", "S", "O"):
        words = [str(t) for t in targets.reshape(-1)[:3] if isinstance(t, str | bytes)]
    elif isinstance(targets, (list, tuple)):
        words = [t for t in targets[:3] if isinstance(t, str | bytes)]
    else:
        return
    if words:
        raise DataError(
            f"{where}: the {item} are words ({', '.join(repr(w) for w in words)}, ...), not numbers; number the classes "
            "0..C-1 first, e.g. classes, y = numpy.unique(y, return_inverse=True)"
        )


def size(piece: Piece) -> int:
    return len(piece[0]) if isinstance(piece, tuple) else len(piece)  # type: ignore[arg-type]


def examples(piece: Piece, index: torch.Tensor | None = None, where: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and targets of `piece` at `index` (all of them when None), as tensors."""
    if isinstance(piece, tuple):
        x, y = piece
        return (x, y) if index is None else (x[index], y[index])
    chosen = range(len(piece)) if index is None else index.tolist()  # type: ignore[arg-type]
    inputs, targets = [], []
    for i in chosen:
        item = piece[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"{where}: item {i} of the Dataset is {type(item).__name__}; each item must be (input, target)")
        _refuse_words(item[1], where, f"targets of the Dataset (item {i}: {item[1]!r})")
        try:
            inputs.append(torch.as_tensor(item[0]))
            targets.append(torch.as_tensor(item[1]))
        except (TypeError, ValueError, RuntimeError):
            raise DataError(
                f"{where}: item {i} of the Dataset holds a {type(item[0]).__name__}, not a tensor or array; "
                "give the Dataset a transform that returns tensors (e.g. torchvision's ToTensor())"
            ) from None
    if not inputs:
        raise DataError(f"{where}: the Dataset is empty")
    return torch.stack(inputs), torch.stack(targets)
