"""Start a study's workers and watch them until the budget is met.

    summary = launch(LaunchOptions("studies/quickstart.toml"))

The launcher validates the study file, initialises the storage ONCE (workers never create
tables, so they never race), records the launch, then runs the workers:

* one worker, no GPUs named: in this process;
* `--workers N` or `--gpus 0,1 --per-gpu M`: worker processes (`hpsearch worker`), each with
  `CUDA_VISIBLE_DEVICES` set here (a worker never picks a GPU), each logging to its own file;
* `--dask ADDRESS`: worker tasks on a Dask cluster (see `cluster.py`).

One progress display covers all workers (it reads the database). SIGTERM / Ctrl-C asks every
worker to stop (each re-queues its running trials); a second Ctrl-C kills them, and the
launcher re-queues what they left running.
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import tables
from .data import check_available
from .environment import versions
from .errors import HpsearchError
from .export import bundle_params, enqueue
from .heartbeat import Requeue, release
from .progress import LaunchProgress
from .spec import StudyFile, load_study_file
from .storage import initialize, mask_url, open_storage, rdb, resolve_url
from .dashboard import write_study_note
from .study import OpenStudy, best_trial, counts, create_study, finished
from .worker import Worker, WorkerOptions, handle_signals, resolve_device

log = logging.getLogger("hpsearch.launch")
EXIT_FAILING = 3  # a worker stopped because its trials kept failing


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
    outcome: str  # finished, timeout, interrupted, failed
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
        return self.outcome in ("finished", "timeout")


def plan_slots(workers: int, gpus: str | None, per_gpu: int, gpu_count: int | None = None) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker (None: the worker inherits the environment).

    >>> plan_slots(1, "0,2", 2)
    ['0', '0', '2', '2']
    """
    if per_gpu < 1:
        raise HpsearchError(f"--per-gpu must be >= 1, got {per_gpu}")
    if gpus is None:
        if workers < 1:
            raise HpsearchError(f"--workers must be >= 1, got {workers}")
        return [None] * workers
    if workers != 1:
        raise HpsearchError("use --workers or --gpus, not both: --gpus starts --per-gpu workers per GPU")
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    if gpus == "all":
        ids = list(range(gpu_count))
        if not ids:
            raise HpsearchError("--gpus all: no GPU is visible on this machine; leave out --gpus to use the CPU")
    else:
        try:
            ids = [int(part) for part in gpus.split(",") if part.strip()]
        except ValueError:
            raise HpsearchError(f"--gpus: expected GPU numbers like 0,1,3 or 'all', got {gpus!r}") from None
        if not ids or len(set(ids)) != len(ids):
            raise HpsearchError(f"--gpus: expected distinct GPU numbers like 0,1,3, got {gpus!r}")
        missing = [i for i in ids if i >= gpu_count or i < 0]
        if missing:
            raise HpsearchError(
                f"--gpus {gpus}: GPU {missing[0]} does not exist; this machine has {gpu_count} "
                f"(numbered 0..{gpu_count - 1})" if gpu_count else f"--gpus {gpus}: this machine has no GPU"
            )
    return [str(i) for i in ids for _ in range(per_gpu)]


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
    check_available(spec.data, options.data_dir)
    warm_start = bundle_params(options.enqueue, spec) if options.enqueue else []  # before any write
    url = resolve_url(options.storage)
    initialize(url)
    storage = open_storage(url)
    opened = create_study(storage, file, overrides)
    if options.enqueue:
        enqueue(opened, options.enqueue, warm_start)
    if options.prepared is not None:
        options.prepared(opened)
    launch_id = record_launch(opened, url, options.command)
    return url, opened, launch_id


def record_launch(opened: OpenStudy, url: str, command: str, devices: list[str] | None = None) -> int:
    """A row in hpsearch_launches for this launch (or for a worker joining on its own)."""
    info = versions()
    return tables.start_launch(
        rdb(opened.study).engine,
        study_id=opened.study._study_id,
        study_name=opened.spec.study.name,
        study_file_sha256=opened.file.sha256,
        host=socket.gethostname(),
        username=_user(),
        command=command.replace(url, mask_url(url)),
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
        from .cluster import check_address

        check_address(options.dask, resolve_url(options.storage))
    if options.dask is None and options.gpus is None and len(slots) == 1:
        resolve_device(options.device)  # a bad --device is an error before anything is written
    url, opened, launch_id = prepare(options)
    spec = opened.spec
    start = time.time()
    deadline = start + spec.search.timeout if spec.search.timeout else None
    log_dir = Path(options.log_dir) / spec.study.name
    log_dir.mkdir(parents=True, exist_ok=True)
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
        from .cluster import run_on_dask

        devices, outcome, errors = run_on_dask(options.dask, base, options, opened, progress)
    elif options.gpus is None and len(slots) == 1:
        devices, outcome, errors = _run_here(base, opened, log_dir / f"launch-{launch_id}.log", progress)
    else:
        devices, outcome, errors = _run_processes(base, slots, opened, log_dir, launch_id, progress)
    _release_orphans(opened, launch_id)
    state = counts(opened.study)
    if outcome == "finished" and finished(state) < spec.search.n_trials:
        outcome = "timeout" if deadline is not None and time.time() >= deadline else "failed"
    tables.end_launch(rdb(opened.study).engine, launch_id, outcome, devices)
    write_study_note(opened)  # what the dashboard shows about the study
    best = best_trial(opened.study)
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


# -- the three ways of running workers ------------------------------------------------------


def _run_here(
    base: WorkerOptions, opened: OpenStudy, log_file: Path, progress: bool
) -> tuple[list[str], str, list[str]]:
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    notices = logging.StreamHandler()  # warnings (e.g. an engine fallback) also on the console
    notices.setLevel(logging.WARNING)
    notices.setFormatter(logging.Formatter("hpsearch: %(message)s"))
    logger = logging.getLogger("hpsearch")
    logger.addHandler(handler)
    logger.addHandler(notices)
    logger.setLevel(logging.INFO)
    worker = Worker(base)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) if in_main_thread else None
    if in_main_thread:
        handle_signals(worker)
    try:
        with watching(opened, progress):
            report = worker.run()
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(notices)
        handler.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
    device = getattr(worker, "_device_name", "cpu")
    outcome = {"budget": "finished", "timeout": "timeout", "stopped": "interrupted", "failing": "failed"}[
        report.stopped_because
    ]
    errors = [f"trials kept failing; the last error: {report.last_error}"] if report.stopped_because == "failing" else []
    return [device], outcome, errors


def _run_processes(
    base: WorkerOptions, slots: list[str | None], opened: OpenStudy, log_dir: Path, launch_id: int, progress: bool
) -> tuple[list[str], str, list[str]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    # The workers share this machine's cores: more threads than cores and torch's OpenMP
    # threads spin against each other (a 1-second trial takes 10).
    threads = str(max(1, (os.cpu_count() or 1) // len(slots)))
    for index, visible in enumerate(slots):
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", threads)
        env["HPSEARCH_STORAGE"] = base.storage  # not on the command line, where `ps` shows it
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        device = base.device or ("cuda" if visible is not None else None)
        args = [sys.executable, "-m", "hpsearch", "worker", base.study, "--launch-id", str(launch_id), "--index", str(index)]
        args += ["--engine", base.engine, "--precision", base.precision]
        for flag, value in (("--device", device), ("--data-dir", base.data_dir), ("--cohort", base.cohort), ("--deadline", base.deadline)):
            if value is not None:
                args += [flag, str(value)]
        log_file = log_dir / f"launch-{launch_id}-worker-{index}.log"
        with open(log_file, "wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log_file))
    outcome = "finished"
    with stop_requests() as received, watching(opened, progress):
        while any(p.poll() is None for p, _ in procs):
            if len(received) == 1 and outcome != "interrupted":
                outcome = "interrupted"
                for p, _ in procs:
                    _signal(p, signal.SIGTERM)
            elif len(received) >= 2:
                for p, _ in procs:
                    _signal(p, signal.SIGKILL)
            time.sleep(0.2)
    errors = []
    for index, (proc, log_file) in enumerate(procs):
        if proc.returncode == EXIT_FAILING:
            errors.append(f"worker {index}: trials kept failing; see {log_file}")
        elif proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL) and outcome != "interrupted":
            errors.append(f"worker {index} exited with code {proc.returncode}; see {log_file}")
    if errors and outcome == "finished":
        outcome = "failed"
    devices = [_slot_name(base.device, visible) for visible in slots]
    return devices, outcome, errors


def _slot_name(device: str | None, visible: str | None) -> str:
    """How a worker slot is recorded, e.g. 'cuda (CUDA_VISIBLE_DEVICES=2)'."""
    if visible is None:
        return device or "auto"
    return f"{device or 'cuda'} (CUDA_VISIBLE_DEVICES={visible})"


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass


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


class watching:
    """The progress display, refreshed from a thread while the workers run."""

    def __init__(self, opened: OpenStudy, enabled: bool):
        self.opened = opened
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = 0.0

    def __enter__(self) -> "watching":
        if not self.enabled:
            return self
        spec = self.opened.spec
        self.progress = LaunchProgress(self.opened.study, spec.search.n_trials, spec.metric).__enter__()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.progress.refresh()
            except Exception as e:  # a busy database delays the display, never the search
                log.debug("progress refresh failed: %s", e)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self.progress.__exit__(*exc)


def _release_orphans(opened: OpenStudy, launch_id: int) -> None:
    """Fail and re-queue trials this launch's workers left RUNNING (they were killed)."""
    engine = rdb(opened.study).engine
    release(opened.study, tables.open_runs(engine, launch_id), "worker was killed mid-trial", Requeue(None))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return str(os.getuid())
