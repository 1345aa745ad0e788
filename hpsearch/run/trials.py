"""Running a worker's trials: one at a time through `train`, or together through `train_cohort`.

Trials with different batch sizes (or epochs, or data seeds) see different batches, so they
train in different cohorts. Optimizers stepped with a closure (L-BFGS, Newton, conjugate
gradient) and classes named by import path train one at a time even in a cohort worker.

A cohort fails member by member. An error raised by the model or the data fails the members
it hits. A database fault (`db/faults.py`) while reporting or telling is retried; when it
persists, the members are failed and re-queued together (`search/recovery.py`), never failed
for good. Out of memory, the failed cohort is dropped whole (tensors, traceback, frames),
memory is collected and the cache emptied, and then each half tries again; a single member
that does not fit is re-queued once, with the reason, and fails the second time.
"""

from __future__ import annotations

import gc
import logging
from typing import Callable

import torch

from ..db.faults import DatabaseFault, describe, is_fault, retrying
from ..outcomes import TrialOutcome
from ..search.recovery import Requeue, release
from ..training.cohort import CohortCallback, cohort_key, train_cohort
from ..training.results import Interrupted
from ..training.train import train
from . import attempts as ends_of
from .attempts import Attempt, End
from .bookkeeping import Bookkeeper
from .engine import engine_for
from .own_loop import run_own

log = logging.getLogger("hpsearch.worker")
OUT_OF_MEMORY = "out_of_memory"  # the user attribute a trial re-queued for memory carries


def run_trials(book: Bookkeeper, attempts: list[Attempt], should_stop: Callable[[], bool]) -> list[list[End]]:
    """Train `attempts` with the worker's engine; their ends, told and recorded, one list per
    training run (a trial alone, or a cohort): one failed run is one failure in a row."""
    trainer = book.trainer
    if trainer.engine == "function":
        return [_guarded(book, [attempt], lambda a=attempt: run_own(book, a, should_stop)) for attempt in attempts]
    alone = [a for a in attempts if engine_for(trainer, a.config) == "train"]
    ends = [run_one(book, attempt, should_stop) for attempt in alone]
    cohorts: dict[tuple[int, int, int], list[Attempt]] = {}
    for attempt in attempts:
        if attempt not in alone:
            cohorts.setdefault(cohort_key(attempt.config, trainer.data.n_train), []).append(attempt)
    return ends + [group for members in cohorts.values() for group in run_cohort(book, members, should_stop)]


def run_one(book: Bookkeeper, attempt: Attempt, should_stop: Callable[[], bool]) -> list[End]:
    trainer = book.trainer
    _reset_peak_memory(trainer.device)
    on_epoch = reporter(book, [attempt])
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
    except DatabaseFault as e:
        return give_back(book, [attempt], str(e))
    except Exception as e:  # diverged, interrupted, or raised by the user's model
        return finish(book, [ends_of.raised(attempt, e)])
    return finish(book, [ends_of.ended(attempt, result)])


def run_cohort(book: Bookkeeper, members: list[Attempt], should_stop: Callable[[], bool]) -> list[list[End]]:
    """Train `members` as one cohort, or, out of memory, as halves, then quarters, ..."""
    trainer = book.trainer
    runs: list[list[End]] = []
    waiting = [members]
    while waiting:
        group = waiting.pop(0)
        ended = _train_cohort(book, group, should_stop)
        if not isinstance(ended, str):
            runs.append(ended)
            continue
        # Out of memory. `_train_cohort` has returned: nothing refers to the failed cohort's
        # tensors any more (its frames went with the traceback); collect them before retrying.
        free_memory(trainer.device)
        if len(group) == 1:
            runs.append(_alone_out_of_memory(book, group[0], ended))
            continue
        half = len(group) // 2
        trainer.cohort_size = min(trainer.cohort_size, half)
        log.warning("out of memory with a cohort of %d; retrying as cohorts of %d", len(group), half)
        waiting[:0] = [group[:half], group[half:]]
    return runs


def _train_cohort(book: Bookkeeper, members: list[Attempt], should_stop: Callable[[], bool]) -> list[End] | str:
    """The members' ends, or, out of memory, only the error's message (no reference to it)."""
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
            on_epoch=reporter(book, members),
            should_stop=should_stop,
            precision=trainer.precision,
        )
    except Interrupted as e:
        return finish(book, [ends_of.raised(a, e) for a in members])
    except DatabaseFault as e:
        return give_back(book, members, str(e))
    except Exception as e:
        if is_out_of_memory(e):
            return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        return finish(book, [ends_of.raised(a, e) for a in members])  # each member says why
    return finish(book, [ends_of.ended(attempt, result) for attempt, result in zip(members, results)])


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out of memory, or the CPU allocator's."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def free_memory(device: torch.device) -> None:
    gc.collect()  # cycles through the failed cohort's frames
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _alone_out_of_memory(book: Bookkeeper, attempt: Attempt, error: str) -> list[End]:
    where = book.trainer.device_name
    if retrying(lambda: attempt.trial.user_attrs.get(OUT_OF_MEMORY), "reading a trial") is not None:
        return finish(book, [ends_of.End(attempt, TrialOutcome.FAILED, error=f"out of memory alone on {where}, again after a retry: {error}")])
    reason = f"out of memory alone (a cohort of 1) on {where}: {error}; re-queued once"
    log.warning("trial %d: %s", attempt.number, reason)
    return give_back(book, [attempt], reason, {OUT_OF_MEMORY: reason})


# -- bookkeeping that survives database faults ------------------------------------------------


def reporter(book: Bookkeeper, members: list[Attempt]) -> CohortCallback:
    """The bookkeeper's epoch reporter, retried through faults (it rewrites the same rows)."""
    on_epoch = book.epoch_reporter(members)
    return lambda records: retrying(lambda: on_epoch(records), "reporting an epoch")


def finish(book: Bookkeeper, ends: list[End]) -> list[End]:
    """Tell how the trials ended, through faults; if they persist, re-queue the trials."""
    try:
        return retrying(lambda: book.finish(ends), "telling how trials ended")
    except DatabaseFault as e:
        return give_back(book, [end.attempt for end in ends], str(e))


def give_back(book: Bookkeeper, attempts: list[Attempt], reason: str, attrs: dict | None = None) -> list[End]:
    """Fail these trials and queue them again (one transaction each); they end INTERRUPTED."""
    ids = [a.trial_id for a in attempts]
    for attempt in attempts:
        # Beats stop either way: if the release fails too, other workers recover them.
        book.heartbeat.discard(attempt.trial_id)
    try:
        retrying(lambda: release(book.study, ids, reason, Requeue(None), attrs), "re-queuing trials")
    except DatabaseFault as e:
        log.warning("could not re-queue trials %s now (%s); the worker tries again as it leaves", [a.number for a in attempts], e)
    else:
        for attempt in attempts:
            book.running.pop(attempt.number, None)
    return [ends_of.interrupted(a, reason) for a in attempts]


def _guarded(book: Bookkeeper, attempts: list[Attempt], run: Callable[[], list[End]]) -> list[End]:
    try:
        return run()
    except Exception as e:
        if not is_fault(e):
            raise
        return give_back(book, attempts, f"database fault: {describe(e)}")


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
