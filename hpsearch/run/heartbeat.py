"""Heartbeats for the trials a worker runs.

Optuna records heartbeats only inside `study.optimize()`; hpsearch's workers use ask/tell
(a cohort runs many trials at once), so they beat for every running trial themselves, from a
thread, and other workers fail a trial whose beats stop (`search/recovery.py`). One beat is
one statement for all the trials a worker runs, however many; a trial's first beat is written
when it is claimed (`db/claims.py`). A launcher beats its launch's row the same way
(`beating`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Iterator

from ..db import bulk, launches

log = logging.getLogger(__name__)


class Heartbeat:
    """A thread that records a heartbeat for each trial in its set every `interval` seconds,
    and runs `also` (e.g. a look for a stop request) each time."""

    def __init__(self, db: Any, interval: float, also: Callable[[], None] | None = None):
        self._db = db  # a SQLAlchemy engine
        self._interval = interval
        self._also = also
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.seconds = 0.0  # spent beating, for the worker's bookkeeping figures
        self._thread = threading.Thread(target=self._run, name="hpsearch-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_ids: list[int]) -> None:
        """Beat for these trials from now on (claiming them gave them their first beat)."""
        with self._lock:
            self._ids.update(trial_ids)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            start = time.perf_counter()
            try:
                bulk.beat(self._db, ids)
            except Exception as e:  # a missed beat is retried next interval
                log.warning("heartbeat for trials %s failed: %s", sorted(ids)[:10], e)
            self.seconds += time.perf_counter() - start
            if self._also is not None:
                try:
                    self._also()
                except Exception as e:  # as for a beat: try again next interval
                    log.warning("heartbeat check failed: %s", e)


@contextlib.contextmanager
def beating(db: Any, launch_id: int, interval: float) -> Iterator[None]:
    """While inside, beat a launch's row in `hpsearch_launches` every `interval` seconds.

    When the beats stop for longer than the study's grace period (the launcher was killed),
    the launch is `lost`: `hpsearch launches` says so, the workers that no parent-death
    signal reached (Dask tasks, other machines, other systems than Linux) stop at their next
    heartbeat, and the next launch of the study closes the row (`db/launches.py`)."""
    heart = Heartbeat(db, interval, also=lambda: launches.beat(db, launch_id))
    try:
        yield
    finally:
        heart.close()
