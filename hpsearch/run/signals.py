"""SIGTERM and Ctrl-C: the first asks to stop (running trials are re-queued), the second forces."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .worker import Worker


def handle_signals(worker: "Worker") -> None:
    """SIGTERM / Ctrl-C: stop after re-queuing the running trials; a second Ctrl-C forces."""

    def on_signal(signum: int, _frame: Any) -> None:
        if worker.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Count SIGTERM / SIGINT while inside: the first asks to stop, the second forces."""
    received: list[int] = []
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    handler = lambda signum, _frame: received.append(signum)  # noqa: E731
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


@contextmanager
def worker_signals(worker: "Worker") -> Iterator[None]:
    """`handle_signals` while inside, when in the main thread (signals reach only it)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    handle_signals(worker)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
