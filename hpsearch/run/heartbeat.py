"""Heartbeats for the trials a worker runs.

Optuna records heartbeats only inside `study.optimize()`; hpsearch's workers use ask/tell
(a cohort runs many trials at once), so they beat for every running trial themselves, from a
thread, and other workers fail a trial whose beats stop (`search/recovery.py`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class Heartbeat:
    """A thread that records a heartbeat for each trial in its set every `interval` seconds,
    and runs `also` (e.g. a look for a stop request) each time."""

    def __init__(self, storage: Any, interval: float, also: Callable[[], None] | None = None):
        self._storage = storage
        self._interval = interval
        self._also = also
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpsearch-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        self._storage.record_heartbeat(trial_id)  # at once: no window without a heartbeat
        with self._lock:
            self._ids.add(trial_id)

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
            for trial_id in ids:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception as e:  # a missed beat is retried next interval
                    log.warning("heartbeat for trial %s failed: %s", trial_id, e)
            if self._also is not None:
                try:
                    self._also()
                except Exception as e:  # as for a beat: try again next interval
                    log.warning("heartbeat check failed: %s", e)
