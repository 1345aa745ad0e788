"""The worker: ask -> train -> report / prune -> tell, until the study's budget is met.

    report = Worker(WorkerOptions(storage=url, study="quickstart")).run()

A worker needs only a storage URL and a study name: the study file comes from the database.
It stops when the study holds `n_trials` finished (COMPLETE + PRUNED) trials, counted across
all workers, at the launch's deadline, or when asked to (SIGTERM / Ctrl-C, or a stop request
in the database): then it takes no new trial, fails the ones it is running and re-queues
them for another worker or the next launch. It beats for every trial it runs and, before
asking, fails trials whose worker died. A database fault anywhere is retried (`db/faults.py`);
when it persists the trials it hit are re-queued and the worker waits and carries on.

The pieces: `engine.py` chooses what trains, `bookkeeping.py` writes everything about the
trials, `trials.py` runs them, `attempts.py` says how each ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from ..db import launches
from ..db.faults import DatabaseFault, describe, is_fault, quiet_pool_faults, retrying
from ..db.storage import open_storage
from ..outcomes import LaunchOutcome, TrialOutcome, WorkerStop
from ..search.budget import counts, finished
from ..search.recovery import Requeue, fail_stale
from ..search.samplers import make_pruner, make_sampler
from ..search.study import open_study
from .attempts import Attempt, End
from .bookkeeping import Bookkeeper
from .engine import prepare_trainer
from .heartbeat import Heartbeat
from .trials import give_back, run_trials

log = logging.getLogger("hpsearch.worker")
POLL_SECONDS = 1.0  # how often an idle worker looks whether the last trials finished
MAX_FAILURES_IN_A_ROW = 5  # a study whose every trial raises stops instead of spinning
MAX_FAULT_ROUNDS = 10  # rounds whose database faults outlast the retries before a worker stops
FAULT_PAUSE_SECONDS = 5.0


@dataclass
class WorkerOptions:
    storage: str
    study: str
    device: str | None = None  # default: cuda when available, else cpu
    engine: str = "auto"  # train, cohort or auto
    cohort: int | None = None  # members per cohort; None picks from the device's memory
    precision: str = "fp32"  # fp32 (the reference), tf32 or bf16 (autocast), CUDA only
    data_dir: str | None = None
    launch_id: int | None = None
    index: int = 0  # this worker's number within its launch (seeds its sampler)
    deadline: float | None = None  # time.time() after which no new trial starts


@dataclass
class WorkerReport:
    outcomes: Counter[TrialOutcome] = field(default_factory=Counter)
    stopped_because: WorkerStop = WorkerStop.BUDGET
    last_error: str | None = None
    device_name: str | None = None
    bookkeeping: dict[str, float] = field(default_factory=dict)  # seconds: asking, reporting, telling, heartbeats


class Worker:
    def __init__(self, options: WorkerOptions):
        self.options = options
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Finish nothing more: the running trials end as interrupted and are re-queued."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> WorkerReport:
        options = self.options
        quiet_pool_faults()
        storage = open_storage(options.storage)
        opened = open_study(storage, options.study)
        spec, study = opened.spec, opened.study
        # Seeded by how many trials the study holds: one count, not a read of every trial.
        offset = sum(retrying(lambda: counts(study), "counting trials").values())
        study.sampler = make_sampler(spec, worker=options.index, offset=offset)
        study.pruner = make_pruner(spec.search, spec.train.epochs)
        trainer = prepare_trainer(spec, options.device, options.engine, options.cohort, options.precision, options.data_dir)
        requeue = Requeue(spec.search.max_retry)
        grace = spec.search.grace_seconds
        heartbeat = Heartbeat(storage.engine, spec.search.heartbeat_interval, also=lambda: self._look_for_stop(storage.engine, grace))
        book = Bookkeeper(study, spec, trainer, heartbeat, options.launch_id)
        report = WorkerReport(device_name=trainer.device_name)
        failures_in_a_row = 0
        faults_in_a_row = 0
        try:
            while True:
                if self._stop.is_set():
                    report.stopped_because = WorkerStop.STOPPED
                    break
                if options.deadline is not None and time.time() >= options.deadline:
                    report.stopped_because = WorkerStop.TIMEOUT
                    break
                try:
                    runs = self._round(study, spec, book, trainer, requeue)
                except DatabaseFault as e:
                    # The database is away longer than a retry waits: wait more, take no
                    # trial, and give up (cleanly, re-queuing) only after several rounds.
                    faults_in_a_row += 1
                    report.last_error = str(e)
                    if faults_in_a_row >= MAX_FAULT_ROUNDS:
                        log.error("the database kept failing; stopping: %s", e)
                        report.stopped_because = WorkerStop.STOPPED
                        break
                    log.warning("%s; trying again in %.0fs", e, FAULT_PAUSE_SECONDS)
                    self._stop.wait(FAULT_PAUSE_SECONDS)
                    continue
                faults_in_a_row = 0
                if runs is None:
                    report.stopped_because = WorkerStop.BUDGET
                    break
                for ends in runs:
                    for end in ends:
                        report.outcomes[end.outcome] += 1
                    failed = [end for end in ends if end.outcome == TrialOutcome.FAILED]
                    if failed:  # one failed cohort (or trial) is one failure
                        failures_in_a_row += 1
                        report.last_error = failed[-1].error
                    elif any(end.outcome not in (TrialOutcome.INTERRUPTED, TrialOutcome.LOST) for end in ends):
                        failures_in_a_row = 0
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    report.stopped_because = WorkerStop.FAILING
                    break
        finally:
            book.abandon()
            heartbeat.close()
            report.bookkeeping = {**book.seconds, "heartbeats": heartbeat.seconds}
        return report

    def _round(self, study, spec, book: Bookkeeper, trainer, requeue: Requeue) -> list[list[End]] | None:  # type: ignore[no-untyped-def]
        """Recover stale trials, look at the budget, run one cohort: its ends, or None when met."""
        lost = retrying(lambda: fail_stale(study, spec.search.grace_seconds, requeue), "recovering stale trials")
        if lost:
            log.warning("failed stale trials %s (their worker stopped beating); re-queued", lost)
        state = retrying(lambda: counts(study), "counting finished trials")
        if finished(state) >= spec.search.n_trials:
            return None
        room = spec.search.n_trials - finished(state) - state.get("RUNNING", 0)
        if room <= 0:  # the last trials are running elsewhere; they may still fail
            self._stop.wait(POLL_SECONDS)
            return []
        attempts = retrying(lambda: _begin(book, min(room, trainer.cohort_size)), "asking for trials")
        if not attempts:  # lost the race for the slot; the queue settles in a moment
            self._stop.wait(POLL_SECONDS / 10)
            return []
        return run_trials(book, attempts, self._stop.is_set)

    def _look_for_stop(self, db: object, grace_seconds: float) -> None:
        # Workers the launcher cannot signal (Dask tasks, other machines) stop this way, and
        # so do those whose launcher died where no parent-death signal reached them (lost).
        why = launches.stop_requested(db, self.options.launch_id, grace_seconds)  # type: ignore[arg-type]
        if why == LaunchOutcome.LOST and not self.stopping:
            log.warning("launch %s lost its launcher (no heartbeat for %ss); stopping", self.options.launch_id, grace_seconds)
        if why is not None:
            self.request_stop()


def _begin(book: Bookkeeper, size: int) -> list[Attempt]:
    """`book.begin`, made safe to run again: trials it asked for before a fault are re-queued."""
    try:
        return book.begin(size)
    except Exception as e:
        if is_fault(e) and book.running:  # nothing else runs while a worker asks
            give_back(book, list(book.running.values()), f"database fault while asking: {describe(e)}")
        raise
