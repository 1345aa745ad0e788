"""Batch sizes as numbers: "full" is the whole training set, and what a space allows.

    resolve_batch_size("full", n_train=1437)      # 1437
    largest_batch(spec, n_train)                  # what sizes a cohort's memory plan
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import StudySpec


def resolve_batch_size(batch_size: int | str, n_train: int) -> int:
    """A config's batch size as a number: "full" (or anything larger) is the whole set."""
    if batch_size == "full":
        return n_train
    return min(int(batch_size), n_train)


def batch_sizes(spec: "StudySpec", n_train: int) -> list[int]:
    """The batch sizes a study's space allows, as numbers, smallest first (a range: its ends)."""
    sizes = spec.batch_sizes
    if isinstance(sizes, list):
        values = sizes
    elif hasattr(sizes, "high"):
        values = [sizes.low, sizes.high]
    else:
        values = [sizes]
    return sorted(resolve_batch_size(v, n_train) for v in values)


def largest_batch(spec: "StudySpec", n_train: int) -> int:
    """The largest batch size a study's space allows, as a number."""
    return batch_sizes(spec, n_train)[-1]


def typical_batch(spec: "StudySpec", n_train: int) -> int:
    """The middle of the batch sizes a study's space allows."""
    sizes = batch_sizes(spec, n_train)
    return sizes[len(sizes) // 2]
