"""The launch's own heartbeat: while a launcher (or a worker that joined on its own) runs,
a thread beats its row in `hpsearch_launches`.

    with beating(engine, launch_id, spec.search.heartbeat_interval):
        ...  # run the workers

When the beats stop for longer than the study's grace period (the launcher was killed), the
launch is `lost`: `hpsearch launches` says so, the workers that no parent-death signal reached
(Dask tasks, other machines, other systems than Linux) stop at their next heartbeat, and the
next launch of the study closes the row (`db/launches.py`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from ..db import launches

log = logging.getLogger(__name__)


@contextmanager
def beating(db: Engine, launch_id: int, interval: float) -> Iterator[None]:
    """Beat the launch's row every `interval` seconds while inside."""
    stopped = threading.Event()

    def run() -> None:
        while not stopped.wait(interval):
            try:
                launches.beat(db, launch_id)
            except Exception as e:  # a missed beat is retried next interval, as for trials
                log.warning("heartbeat for launch %s failed: %s", launch_id, e)

    thread = threading.Thread(target=run, name="hpsearch-launch-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join(timeout=5)
