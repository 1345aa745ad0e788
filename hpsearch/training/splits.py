"""The pieces that make a trial reproducible anywhere: the split, the standardisation, the
batch order and the seeding. hpsearch's engines use exactly these functions, and another
project (with or without hpsearch's engines, with a DataLoader) gets the same numbers:

    from hpsearch import BatchOrder, seed_trial, split_indices, standardize

    split = split_indices(len(x), validation_fraction=0.2, limit=1000)   # the bundle's data keys
    x = standardize(x.float(), split.train)               # images: per channel, training statistics
    seed_trial(config)                                    # before building the model
    model = Net()
    loader = DataLoader(TensorDataset(x[split.train], y[split.train]),
                        batch_sampler=BatchOrder(len(split.train), config["batch_size"], config["data_seed"]),
                        generator=torch.Generator())      # keeps torch's global generator untouched

A DataLoader draws one number from torch's global generator each time it is iterated unless
it is given a generator of its own; that draw would shift every later dropout mask. Nothing
here imports Optuna.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple

import torch
from torch.utils.data import Sampler

from ..config.batches import resolve_batch_size
from ..config.spec import SPLIT_SEED
from ..errors import DataError


class Split(NamedTuple):
    """Example indices of the training, validation and test sets (test may be empty)."""

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor


def split_indices(
    n: int,
    validation_fraction: float = 0.2,
    test_fraction: float | None = None,
    limit: int | None = None,
    seed: int = SPLIT_SEED,
) -> Split:
    """The split of n examples: a permutation fixed by `seed`, cut to `limit`, whose first
    `round(m * test_fraction)` indices are the test set, the next `round(m * validation_fraction)`
    the validation set and the rest the training set (m = the examples kept)."""
    order = limited_order(n, limit, seed)
    m = len(order)
    n_test = int(round(m * test_fraction)) if test_fraction else 0
    n_val = max(1, int(round(m * validation_fraction)))
    if test_fraction:
        n_test = max(1, n_test)
    if n_test + n_val >= m:
        raise DataError(f"data: {m} examples are too few to hold out {n_val} for validation and {n_test} for test")
    return Split(order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])


def limited_order(n: int, limit: int | None = None, seed: int = SPLIT_SEED) -> torch.Tensor:
    """A permutation of range(n) fixed by `seed`, cut to its first `limit` indices."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order if limit is None else order[:limit]


def standardize(x: torch.Tensor, train: torch.Tensor | slice | None = None) -> torch.Tensor:
    """Images `[N, C, H, W]` standardised per channel with the statistics of `x[train]`
    (default: all of x); any other input is returned as it is."""
    if x.dim() != 4:
        return x
    mean, std = channel_stats(x if train is None else x[train])
    return (x - mean) / std


def channel_stats(x_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation `[1, C, 1, 1]` of training images."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return mean, std


def batch_order(n: int, batch_size: int, data_seed: int, epoch: int, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """The index batches of one epoch: a permutation fixed by (data_seed, epoch)."""
    generator = torch.Generator().manual_seed(data_seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).to(device)
    return iter(order.split(batch_size))


class BatchOrder(Sampler[list[int]]):
    """hpsearch's batch order as a DataLoader `batch_sampler`: each pass over it is the next
    epoch (call `set_epoch` to choose one). `batch_size` may be "full"."""

    def __init__(self, n: int, batch_size: int | str, data_seed: int, epoch: int = 0):
        self.n = n
        self.batch_size = resolve_batch_size(batch_size, n)
        self.data_seed = int(data_seed)
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        for batch in batch_order(self.n, self.batch_size, self.data_seed, epoch):
            yield batch.tolist()

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)


def seed_trial(config: Mapping[str, Any]) -> None:
    """Seed torch as hpsearch does before it builds a trial's model: its init seed."""
    torch.manual_seed(int(config["seed"]))
