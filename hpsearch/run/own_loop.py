"""Running a trial through the study's own loop (`train.function`), one at a time per worker.

The loop trains however it likes (`training/own_loop.py` states the contract); the worker
does the rest as for its own engines: sampling, heartbeats, reports and pruning, the end.
"""

from __future__ import annotations

from typing import Callable

from ..training.own_loop import train_own
from . import attempts as ends_of
from .attempts import Attempt, End
from .bookkeeping import Bookkeeper


def run_own(book: Bookkeeper, attempt: Attempt, should_stop: Callable[[], bool]) -> list[End]:
    trainer = book.trainer
    assert trainer.function is not None
    on_epoch = book.epoch_reporter([attempt])
    try:
        result = train_own(
            trainer.function,
            attempt.config,
            trainer.device,
            options=trainer.options,
            on_epoch=lambda record: not on_epoch({0: record}),
            should_stop=should_stop,
        )
    except Exception as e:  # diverged, interrupted, or raised by the user's loop
        return book.finish([ends_of.raised(attempt, e)])
    return book.finish([ends_of.ended(attempt, result)])
