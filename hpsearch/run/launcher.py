"""Start a study's workers and watch them until the budget is met.

    summary = launch(LaunchOptions("studies/quickstart.toml"))

The launcher validates the study file, initialises the storage ONCE (workers never create
tables, so they never race), records the launch, then runs the workers:

* one worker, no GPUs named: in this process;
* `--workers N` or `--gpus 0,1 --per-gpu M`: worker processes (`processes.py`), each with
  `CUDA_VISIBLE_DEVICES` set by the launcher (a worker never picks a GPU);
* `--dask ADDRESS`: worker tasks on a Dask cluster (`dask.py`).

One progress display covers all workers (it reads the database). SIGTERM / Ctrl-C asks every
worker to stop (each re-queues its running trials); a second Ctrl-C kills them, and the
launcher re-queues what they left running.
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from typing import Any

from ..config.spec import StudyFile, load_study_file
from ..db import launches, runs
from ..db.faults import retrying
from ..db.storage import initialize, open_storage, rdb
from ..db.urls import mask_secrets, mask_url, resolve_url
from ..errors import DataError, HpsearchError, ModelError
from ..outcomes import LAUNCH_OUTCOME, LaunchOutcome, WorkerStop
from ..search.budget import best_trial, counts, finished
from ..search.note import write_study_note
from ..search.recovery import Requeue, release
from ..search.study import OpenStudy, create_study, undo_launch
from ..search.warm_start import bundle_params, enqueue
from ..training.contract import check_trainable
from ..training.device import resolve_device, versions
from .engine import check_optimizers
from .heartbeat import beating
from .logs import LogFile, log_folder
from .processes import plan_slots, run_processes
from .progress import watching
from .signals import worker_signals
from .worker import Worker, WorkerOptions

log = logging.getLogger("hpsearch.launch")


@dataclass
class LaunchOptions:
    study_file: str | StudyFile  # a path, or a study file already read
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    sampler: str | None = None
    seed: int | None = None
    device: str | None = None
    data_dir: str | None = None
    engine: str = "auto"
    cohort: int | None = None
    workers: int = 1
    gpus: str | None = None  # "0,1,3" or "all"
    per_gpu: int = 1
    dask: str | None = None
    enqueue: str | None = None
    log_dir: str = "hpsearch-logs"
    precision: str = "fp32"
    gpu_count: int | None = None  # GPUs on this machine; None asks torch (tests inject it)
    prepared: Callable[[OpenStudy], None] | None = None  # runs once the study exists, before workers
    command: str = field(default_factory=lambda: shlex.join(sys.argv))


@dataclass
class LaunchSummary:
    study: str
    storage: str  # masked
    launch_id: int
    outcome: LaunchOutcome  # finished, timeout, interrupted, failed
    counts: dict[str, int]
    n_trials: int
    metric: str
    direction: str
    best_number: int | None
    best_value: float | None
    best_config: dict[str, Any] | None
    seconds: float
    log_dir: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The study reached its total (a timeout that left it unfinished is not ok)."""
        return self.outcome == LaunchOutcome.FINISHED


def prepare(options: LaunchOptions) -> tuple[str, OpenStudy, int]:
    """Everything before the first worker starts; returns (url, study, launch id)."""
    file = options.study_file if isinstance(options.study_file, StudyFile) else load_study_file(options.study_file)
    overrides = {
        k: v
        for k, v in {"n_trials": options.n_trials, "timeout": options.timeout, "sampler": options.sampler, "seed": options.seed}.items()
        if v is not None
    }
    spec = file.spec.with_overrides(**overrides)
    file = StudyFile(file.path, file.text, spec)
    try:
        check_trainable(spec, options.data_dir, options.engine)  # the model and data, before any write
    except (ModelError, DataError) as e:
        raise led_by_path(e, file.path) from None
    check_optimizers(spec, file.path)  # a class by import path: importable, takes its keys
    warm_start = bundle_params(options.enqueue, spec) if options.enqueue else []  # before any write
    url = resolve_url(options.storage)
    initialize(url)
    storage = open_storage(url)
    opened = create_study(storage, file, overrides, options.precision)
    try:
        if options.enqueue:
            enqueue(opened, options.enqueue, warm_start)
        if options.prepared is not None:
            options.prepared(opened)
        launch_id = record_launch(opened, url, options.command)
    except BaseException:
        undo_launch(opened)
        raise
    return url, opened, launch_id


def record_launch(opened: OpenStudy, url: str, command: str, devices: list[str] | None = None) -> int:
    """A row in hpsearch_launches for this launch (or for a worker joining on its own).

    Launches of the study whose launcher died (kill -9) are closed as lost first."""
    info = versions()
    engine = rdb(opened.study).engine
    lost = launches.close_lost(engine, opened.spec.search.grace_seconds, study_name=opened.spec.study.name)
    if lost:
        log.warning("closed launch %s of study %s as lost (its launcher stopped beating)", ", ".join(map(str, lost)), opened.spec.study.name)
    return launches.start_launch(
        engine,
        study_id=opened.study._study_id,
        study_name=opened.spec.study.name,
        study_file_sha256=opened.file.sha256,
        host=socket.gethostname(),
        username=_user(),
        command=mask_secrets(command, url),
        hpsearch_version=info["hpsearch"],
        torch_version=info["torch"],
        optuna_version=info["optuna"],
        python_version=info["python"],
        cuda_version=info["cuda"],
        devices=devices or [],
        n_workers=len(devices or []),
    )


def launch(options: LaunchOptions, progress: bool = True) -> LaunchSummary:
    """Run a study to its budget (or timeout, or a stop request) and summarise it."""
    slots = plan_slots(options.workers, options.gpus, options.per_gpu, options.gpu_count)
    if options.dask is not None:
        from .dask import check_address

        check_address(options.dask, resolve_url(options.storage))
    if options.dask is None and options.gpus is None and len(slots) == 1:
        resolve_device(options.device)  # a bad --device is an error before anything is written
    url, opened, launch_id = prepare(options)
    try:
        # Until the row is closed: a launch whose beats stop is lost (its launcher was killed).
        with beating(rdb(opened.study).engine, launch_id, opened.spec.search.heartbeat_interval):
            return _run(options, slots, url, opened, launch_id, progress)
    except _NothingKept:
        raise
    except BaseException as e:
        # Nothing ran (a factory, the sampler's options, the log folder): leave the name usable.
        if not undo_launch(opened):
            ended = LaunchOutcome.INTERRUPTED if isinstance(e, KeyboardInterrupt) else LaunchOutcome.FAILED
            launches.end_launch(rdb(opened.study).engine, launch_id, ended)
        if isinstance(e, (ModelError, DataError)):  # e.g. the model failing as the engines are timed
            raise led_by_path(e, opened.file.path) from None
        raise


def led_by_path(error: HpsearchError, path: str) -> HpsearchError:
    """The same error, its message led by the study file's path (as `hpsearch check` says it)."""
    if str(error).startswith(f"{path}:"):
        return error
    return type(error)(f"{path}: {error}", trace=error.trace)


class _NothingKept(HpsearchError):
    """The launch failed before any trial ran and was undone."""


def _run(options: LaunchOptions, slots: list[str | None], url: str, opened: OpenStudy, launch_id: int, progress: bool) -> LaunchSummary:
    spec = opened.spec
    start = time.time()
    deadline = start + spec.search.timeout if spec.search.timeout else None
    log_dir = log_folder(options.log_dir, spec.study.name)
    prefix = f"{database_tag(url)}-launch-{launch_id}"  # one folder may serve several databases
    base = WorkerOptions(
        storage=url,
        study=spec.study.name,
        device=options.device,
        engine=options.engine,
        cohort=options.cohort,
        data_dir=options.data_dir,
        launch_id=launch_id,
        deadline=deadline,
        precision=options.precision,
    )
    if options.dask is not None:
        from .dask import run_on_dask

        devices, outcome, errors = run_on_dask(options.dask, base, options, opened, progress)
    elif options.gpus is None and len(slots) == 1:
        devices, outcome, errors = _run_here(base, opened, log_dir / f"{prefix}.log", progress)
    else:
        devices, outcome, errors = run_processes(base, slots, opened, log_dir, prefix, progress)
    _release_orphans(opened, launch_id)
    if outcome == LaunchOutcome.FAILED and undo_launch(opened):
        raise _NothingKept(
            f"launch of study {spec.study.name!r} failed before any trial ran: "
            + ("; ".join(errors) or "see the log")
            + f"; nothing was kept, fix the study file and launch again (logs: {log_dir})"
        )
    state = retrying(lambda: counts(opened.study), "counting the study's trials")
    if outcome == LaunchOutcome.FINISHED and finished(state) < spec.search.n_trials:
        outcome = LaunchOutcome.TIMEOUT if deadline is not None and time.time() >= deadline else LaunchOutcome.FAILED
    elif outcome == LaunchOutcome.TIMEOUT and finished(state) >= spec.search.n_trials:
        outcome = LaunchOutcome.FINISHED  # the deadline came after the last trial
    retrying(lambda: launches.end_launch(rdb(opened.study).engine, launch_id, outcome, devices), "closing the launch")
    retrying(lambda: write_study_note(opened), "writing the study's note")  # what the dashboard shows
    best = retrying(lambda: best_trial(opened.study), "reading the best trial")
    return LaunchSummary(
        study=spec.study.name,
        storage=mask_url(url),
        launch_id=launch_id,
        outcome=outcome,
        counts=state,
        n_trials=spec.search.n_trials,
        metric=spec.metric,
        direction=spec.direction,
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_config=best.user_attrs.get("config") if best else None,
        seconds=time.time() - start,
        log_dir=str(log_dir),
        errors=errors,
    )


# -- workers in this process (the other two ways: processes.py, dask.py) ---------------------


def _run_here(
    base: WorkerOptions, opened: OpenStudy, log_file: Path, progress: bool
) -> tuple[list[str], LaunchOutcome, list[str]]:
    handler = LogFile(log_file)  # a full disk stops the log, not the trials
    notices = logging.StreamHandler()  # warnings (e.g. an engine fallback) also on the console
    notices.setLevel(logging.WARNING)
    notices.setFormatter(logging.Formatter("hpsearch: %(message)s"))
    logger = logging.getLogger("hpsearch")
    logger.addHandler(handler)
    logger.addHandler(notices)
    logger.setLevel(logging.INFO)
    worker = Worker(base)
    try:
        with worker_signals(worker), watching(opened, progress):
            report = worker.run()
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(notices)
        handler.close()
    errors = [f"trials kept failing; the last error: {report.last_error}"] if report.stopped_because == WorkerStop.FAILING else []
    return [report.device_name or "cpu"], LAUNCH_OUTCOME[report.stopped_because], errors


def _release_orphans(opened: OpenStudy, launch_id: int) -> None:
    """Fail and re-queue trials this launch's workers left RUNNING (they were killed)."""
    engine = rdb(opened.study).engine
    release(opened.study, runs.open_runs(engine, launch_id), "worker was killed mid-trial", Requeue(None))


def database_tag(url: str) -> str:
    """A short, stable name for a database in log file names: its name and a hash of its URL."""
    import hashlib

    parsed = make_url(url)
    name = Path(parsed.database or "memory").stem or "db"
    digest = hashlib.sha256(mask_url(url).encode()).hexdigest()[:6]
    return f"{name[:40]}-{digest}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return str(os.getuid())
