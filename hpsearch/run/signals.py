"""SIGTERM, SIGHUP and Ctrl-C: the first asks to stop (running trials are re-queued), the second forces.

SIGHUP (a closed terminal or SSH session) is a stop request like SIGTERM. A worker process
also gets SIGTERM when its launcher dies, even by kill -9 (`die_with_parent`, Linux).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .worker import Worker

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def handle_signals(worker: Worker) -> None:
    """SIGTERM / Ctrl-C: stop after re-queuing the running trials; a second Ctrl-C forces."""

    def on_signal(signum: int, _frame: Any) -> None:
        if worker.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        # The handler runs in the main thread between two of its steps, maybe while that
        # thread holds the stop event's lock (inside `wait`): setting the event here would
        # wait for that lock forever. Another thread sets it.
        threading.Thread(target=worker.request_stop, name="hpsearch-stop", daemon=True).start()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Count SIGTERM / SIGINT while inside: the first asks to stop, the second forces."""
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, _frame: received.append(signum))
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def worker_signals(worker: Worker) -> Iterator[None]:
    """`handle_signals` while inside, when in the main thread (signals reach only it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handle_signals(worker)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def die_with_parent(parent: int) -> None:
    """In a worker process, before it runs: SIGTERM when the launcher dies (Linux).

    The kernel sends it even when the launcher is killed with -9, so no worker trains on
    with parent 1; SIGTERM then re-queues its running trials as any stop does. Elsewhere the
    worker's stale-trial check and the launch row's heartbeat cover it.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGTERM)
