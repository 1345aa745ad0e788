"""Running a worker's trials: one at a time through `train`, or together through `train_cohort`.

Trials with different batch sizes (or epochs, or data seeds) see different batches, so they
train in different cohorts. Optimizers stepped with a closure (L-BFGS, Newton, conjugate
gradient) and classes named by import path train one at a time even in a cohort worker. Out
of memory, a cohort splits in two and each half tries again; no trial is lost.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from ..training.cohort import cohort_key, train_cohort
from ..training.results import Interrupted
from ..training.train import train
from . import attempts as ends_of
from .attempts import Attempt, End
from .bookkeeping import Bookkeeper
from .engine import engine_for
from .own_loop import run_own

log = logging.getLogger("hpsearch.worker")


def run_trials(book: Bookkeeper, attempts: list[Attempt], should_stop: Callable[[], bool]) -> list[End]:
    """Train `attempts` with the worker's engine; each one's end, told and recorded."""
    trainer = book.trainer
    if trainer.engine == "function":
        return [end for attempt in attempts for end in run_own(book, attempt, should_stop)]
    alone = [a for a in attempts if engine_for(trainer, a.config) == "train"]
    ends = [end for attempt in alone for end in run_one(book, attempt, should_stop)]
    cohorts: dict[tuple[int, int, int], list[Attempt]] = {}
    for attempt in attempts:
        if attempt not in alone:
            cohorts.setdefault(cohort_key(attempt.config, trainer.data.n_train), []).append(attempt)
    return ends + [end for members in cohorts.values() for end in run_cohort(book, members, should_stop)]


def run_one(book: Bookkeeper, attempt: Attempt, should_stop: Callable[[], bool]) -> list[End]:
    trainer = book.trainer
    _reset_peak_memory(trainer.device)
    on_epoch = book.epoch_reporter([attempt])
    try:
        result = train(
            trainer.make_model,
            trainer.data,
            attempt.config,
            book.spec.metric,
            on_epoch=lambda record: not on_epoch({0: record}),
            should_stop=should_stop,
            precision=trainer.precision,
        )
    except Exception as e:  # diverged, interrupted, or raised by the user's model
        return book.finish([ends_of.raised(attempt, e)])
    return book.finish([ends_of.ended(attempt, result)])


def run_cohort(book: Bookkeeper, members: list[Attempt], should_stop: Callable[[], bool]) -> list[End]:
    trainer = book.trainer
    for attempt in members:
        attempt.cohort_size = len(members)
    _reset_peak_memory(trainer.device)
    try:
        results = train_cohort(
            trainer.make_model,
            trainer.data,
            [attempt.config for attempt in members],
            book.spec.metric,
            on_epoch=book.epoch_reporter(members),
            should_stop=should_stop,
            precision=trainer.precision,
        )
    except Interrupted as e:
        return book.finish([ends_of.raised(a, e) for a in members])
    except torch.OutOfMemoryError as e:
        if len(members) == 1:
            return book.finish([ends_of.raised(members[0], e)])
        # Back off: the same members in two smaller cohorts; no trial is lost.
        if trainer.device.type == "cuda":
            torch.cuda.empty_cache()
        half = len(members) // 2
        trainer.cohort_size = max(1, half)
        log.warning("out of memory with a cohort of %d; retrying as cohorts of %d", len(members), half)
        return run_cohort(book, members[:half], should_stop) + run_cohort(book, members[half:], should_stop)
    except Exception as e:  # the whole cohort failed; each trial says why
        return book.finish([ends_of.raised(a, e) for a in members])
    return book.finish([ends_of.ended(attempt, result) for attempt, result in zip(members, results)])


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
