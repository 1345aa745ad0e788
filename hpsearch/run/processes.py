"""Worker processes on this machine: one per `--workers`, or `--per-gpu` per GPU of `--gpus`.

Each is an `hpsearch worker` process with `CUDA_VISIBLE_DEVICES` set here (a worker never
picks a GPU), the storage URL in its environment (not on its command line, where `ps` shows
it), its share of the CPU's threads, and a log file of its own. The launcher forwards the
first SIGTERM / SIGHUP / Ctrl-C to all of them and kills them on the second. If the launcher dies
(kill -9), the kernel sends each worker SIGTERM (`die_with_parent`).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HpsearchError
from ..outcomes import LaunchOutcome
from .progress import watching
from .signals import die_with_parent, stop_requests

if TYPE_CHECKING:
    from ..search.study import OpenStudy
    from .worker import WorkerOptions

EXIT_FAILING = 3  # a worker process's exit code when its trials kept failing


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


def run_processes(
    base: "WorkerOptions", slots: list[str | None], opened: "OpenStudy", log_dir: Path, prefix: str, progress: bool
) -> tuple[list[str], LaunchOutcome, list[str]]:
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
            env["HPSEARCH_GPU_SHARE"] = str(slots.count(visible))  # `--cohort auto` takes its part of the card
        device = base.device or ("cuda" if visible is not None else None)
        args = [sys.executable, "-m", "hpsearch", "worker", base.study, "--launch-id", str(base.launch_id), "--index", str(index)]
        args += ["--engine", base.engine, "--precision", base.precision]
        for flag, value in (("--device", device), ("--data-dir", base.data_dir), ("--cohort", base.cohort), ("--deadline", base.deadline)):
            if value is not None:
                args += [flag, str(value)]
        log_file = log_dir / f"{prefix}-worker-{index}.log"
        with open(log_file, "wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=functools.partial(die_with_parent, os.getpid()))
        procs.append((proc, log_file))
    outcome = LaunchOutcome.FINISHED
    with stop_requests() as received, watching(opened, progress):
        while any(p.poll() is None for p, _ in procs):
            if len(received) == 1 and outcome != LaunchOutcome.INTERRUPTED:
                outcome = LaunchOutcome.INTERRUPTED
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
        elif proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL) and outcome != LaunchOutcome.INTERRUPTED:
            errors.append(f"worker {index} exited with code {proc.returncode}; see {log_file}")
    if errors and outcome == LaunchOutcome.FINISHED:
        outcome = LaunchOutcome.FAILED
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
