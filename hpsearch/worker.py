"""The worker: ask -> train -> report / prune -> tell, until the study's budget is met.

    report = Worker(WorkerOptions(storage=url, study="quickstart")).run()

A worker needs only a storage URL and a study name: the study file comes from the database.
It stops when the study holds `n_trials` finished (COMPLETE + PRUNED) trials, counted across
all workers, at the launch's deadline, or when asked to (SIGTERM / Ctrl-C): then it takes no
new trial, fails the ones it is running and re-queues them for another worker or the next
launch. It beats for every trial it runs and, before asking, fails trials whose worker died.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
import torch

from . import reports, tables
from .cohort import check_vectorizable, cohort_key, member_footprint, seconds_per_member_step, train_cohort
from .data import load_dataset, resolve_batch_size
from .errors import HpsearchError
from .heartbeat import Heartbeat, Requeue, fail_stale
from .models import model_factory
from .objective import Diverged, Epoch, Interrupted, TrainResult
from .snapshot import SnapshotSampler, prune_together
from .space import suggest_config, trial_seed
from .storage import open_storage, rdb
from .study import claims_a_slot, counts, finished, make_pruner, make_sampler, open_study
from .train import seconds_per_step, train

log = logging.getLogger("hpsearch.worker")
TrialState = optuna.trial.TrialState
POLL_SECONDS = 1.0  # how often an idle worker looks whether the last trials finished
MAX_FAILURES_IN_A_ROW = 5  # a study whose every trial raises stops instead of spinning
CPU_COHORT = 32  # members per cohort on the CPU: ~11x per member-step, few sampler rounds lost
MAX_COHORT = 4096
MEMORY_HEADROOM = 0.8  # share of the GPU's free memory a cohort may plan to use


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
    outcomes: Counter = field(default_factory=Counter)
    stopped_because: str = "budget"  # budget, timeout, stopped, failing
    last_error: str | None = None


def resolve_device(device: str | None) -> torch.device:
    """The device to train on; a CUDA request without a visible GPU is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise HpsearchError(f"--device: unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise HpsearchError(
            f"--device {device}: no CUDA device is visible (torch.cuda.is_available() is False); "
            "use --device cpu"
        )
    return chosen


def set_precision(precision: str, device: torch.device) -> None:
    """fp32 is true float32 everywhere; tf32 and bf16 let CUDA matmuls use TF32."""
    if device.type != "cuda":
        return
    fast = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast


def _batch_sizes(spec: Any, n_train: int) -> list[int]:
    sizes = spec.batch_sizes
    if isinstance(sizes, list):
        values = sizes
    elif hasattr(sizes, "high"):
        values = [sizes.low, sizes.high]
    else:
        values = [sizes]
    return sorted(resolve_batch_size(v, n_train) for v in values)


def largest_batch(spec: Any, n_train: int) -> int:
    """The largest batch size a study's space allows, as a number."""
    return _batch_sizes(spec, n_train)[-1]


def typical_batch(spec: Any, n_train: int) -> int:
    """The middle of the batch sizes a study's space allows."""
    sizes = _batch_sizes(spec, n_train)
    return sizes[len(sizes) // 2]


def device_name(device: torch.device) -> str:
    """What ran a trial, e.g. 'NVIDIA H100 80GB HBM3 (CUDA_VISIBLE_DEVICES=3)'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{name} (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else name


@dataclass
class _Running:
    """A trial this worker has asked for and not yet told."""

    trial: optuna.Trial
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    epochs_run: int = 0
    cohort_size: int = 1
    lost: bool = False  # another worker failed it as stale while it ran


# How one trial ended: (trial, outcome, result, error, traceback); outcome is complete,
# pruned, diverged, failed, interrupted or lost.
_End = tuple[_Running, str, "TrainResult | None", "str | None", "str | None"]


class Worker:
    def __init__(self, options: WorkerOptions):
        self.options = options
        self._stop = threading.Event()
        self._running: dict[int, _Running] = {}
        self._host = socket.gethostname()

    # -- control -------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish nothing more: the running trials end as interrupted and are re-queued."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _look_for_stop(self) -> None:
        # Workers the launcher cannot signal (Dask tasks, other machines) stop this way.
        if tables.stop_requested(self._engine, self.options.launch_id):
            self.request_stop()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> WorkerReport:
        options = self.options
        storage = open_storage(options.storage)
        opened = open_study(storage, options.study)
        spec = opened.spec
        study = opened.study
        study.sampler = SnapshotSampler(make_sampler(spec, worker=options.index, offset=len(study.trials)))
        study.pruner = make_pruner(spec.search, spec.train.epochs)
        self._opened = opened
        self._requeue = Requeue(spec.search.max_retry)
        self._interrupted = Requeue(None)  # an interrupted trial always runs again
        self._device = resolve_device(options.device)
        self._device_name = device_name(self._device)
        self._data = load_dataset(spec.data, spec.metric, options.data_dir).to(self._device)
        self._make_model = model_factory(spec.model, self._data)
        self._engine = storage.engine
        set_precision(options.precision, self._device)
        self._engine_name = self._choose_engine()
        self._cohort_size = self._choose_cohort_size() if self._engine_name == "cohort" else 1
        self._heartbeat = Heartbeat(storage, spec.search.heartbeat_interval, also=self._look_for_stop)
        report = WorkerReport()
        failures_in_a_row = 0
        try:
            while True:
                if self._stop.is_set():
                    report.stopped_because = "stopped"
                    break
                if options.deadline is not None and time.time() >= options.deadline:
                    report.stopped_because = "timeout"
                    break
                lost = fail_stale(study, spec.search.grace_seconds, self._requeue)
                if lost:
                    log.warning("failed stale trials %s (their worker stopped beating); re-queued", lost)
                state = counts(study)
                if finished(state) >= spec.search.n_trials:
                    report.stopped_because = "budget"
                    break
                room = spec.search.n_trials - finished(state) - state.get("RUNNING", 0)
                if room <= 0:  # the last trials are running elsewhere; they may still fail
                    self._stop.wait(POLL_SECONDS)
                    continue
                runnings = self._begin(study, min(room, self._cohort_size), spec.search.n_trials)
                if not runnings:  # lost the race for the slot; the queue settles in a moment
                    self._stop.wait(POLL_SECONDS / 10)
                    continue
                for outcome, error in self._run(study, runnings):
                    report.outcomes[outcome] += 1
                    if outcome == "failed":
                        failures_in_a_row += 1
                        report.last_error = error
                    elif outcome not in ("interrupted", "lost"):
                        failures_in_a_row = 0
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    report.stopped_because = "failing"
                    break
        finally:
            self._abandon_running(study)
            self._heartbeat.close()
        return report

    # -- choosing the engine -------------------------------------------------------------

    def _choose_engine(self) -> str:
        if self.options.engine == "train":
            return "train"
        reason = check_vectorizable(self._make_model, self._data)
        if reason is not None:
            log.warning(
                "model %s cannot train in cohorts (%s); training one trial at a time instead",
                self._opened.spec.model.name,
                reason,
            )
            return "train"
        if self.options.engine == "cohort" or self._device.type == "cuda":
            return "cohort"
        # auto on the CPU: cohorts win for small models (less overhead per trial), not for
        # convolutions (each member's backward runs on its own there): measure, then choose.
        batch = typical_batch(self._opened.spec, self._data.n_train)
        members = self.options.cohort or CPU_COHORT
        together = seconds_per_member_step(self._make_model, self._data, min(members, 8), batch)
        alone = seconds_per_step(self._make_model, self._data, batch)
        chosen = "cohort" if together < 0.8 * alone else "train"
        log.info("engine %s: a step takes %.2f ms per trial in a cohort, %.2f ms alone", chosen, 1e3 * together, 1e3 * alone)
        return chosen

    def _choose_cohort_size(self) -> int:
        if self.options.cohort is not None:
            return self.options.cohort
        if self._device.type != "cuda":
            return CPU_COHORT
        # The costliest member the space allows: Adam's two states, the largest batch.
        config = {
            "optimizer": {"name": "adam", "lr": 0.0, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
            "schedule": {"name": "constant"},
            "batch_size": largest_batch(self._opened.spec, self._data.n_train),
            "epochs": 1,
            "seed": 0,
            "data_seed": 0,
        }
        per_member = member_footprint(self._make_model, self._data, config)
        free, _ = torch.cuda.mem_get_info(self._device)
        size = int(free * MEMORY_HEADROOM // per_member)
        log.info("cohorts of %d: %.1f MiB per member, %.1f GiB free", size, per_member / 2**20, free / 2**30)
        return max(1, min(MAX_COHORT, size))

    # -- running trials ------------------------------------------------------------------

    def _begin(self, study: optuna.Study, size: int, n_trials: int) -> list[_Running]:
        """Ask for up to `size` trials, sample each, and record them all in two transactions."""
        spec = self._opened.spec
        runnings: list[_Running] = []
        for _ in range(size):
            # Each trial is sampled as soon as it is asked for, before the next is asked:
            # the sampler then reads fewer running trials.
            trial = study.ask()
            if not claims_a_slot(study, trial.number, n_trials):
                # The slot went to another worker's trial or to a queued one numbered lower
                # (a retry committed a moment ago): give this one back to the queue.
                study._storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)
                break
            running = _Running(trial=trial)
            self._running[trial.number] = running  # released on the way out, whatever happens
            self._heartbeat.add(trial._trial_id)
            # A queued trial may carry its seed (a comparison's re-runs); a retried trial keeps
            # the seed of the trial it retries, so it reproduces it.
            given = trial.user_attrs.get("seed")
            root = int(trial.user_attrs.get("retry_of", trial.number))
            running.seed = int(given) if given is not None else trial_seed(spec.train.seed, root)
            running.config = suggest_config(trial, spec, running.seed)
            runnings.append(running)
        if not runnings:  # nothing to record (an empty write would still lock SQLite)
            return runnings
        shared = {"device": self._device_name, "host": self._host, "engine": self._engine_name}
        reports.set_attrs(
            self._engine,
            [(r.trial._trial_id, "config", r.config) for r in runnings]
            + [(r.trial._trial_id, key, value) for r in runnings for key, value in shared.items()],
        )
        run_ids = tables.start_trial_runs(
            self._engine,
            [
                dict(
                    trial_id=r.trial._trial_id, launch_id=self.options.launch_id, host=self._host,
                    pid=os.getpid(), device=self._device_name, engine=self._engine_name, cohort_size=1, seed=r.seed,
                )
                for r in runnings
            ],
        )
        for running, run_id in zip(runnings, run_ids):
            running.run_id = run_id
        return runnings

    def _run(self, study: optuna.Study, runnings: list[_Running]) -> list[tuple[str, str | None]]:
        if self._engine_name == "train":
            return [outcome for running in runnings for outcome in self._run_one(study, running)]
        groups: dict[tuple[int, int, int], list[_Running]] = {}
        for running in runnings:
            groups.setdefault(cohort_key(running.config, self._data.n_train), []).append(running)
        return [outcome for members in groups.values() for outcome in self._run_cohort(study, members)]

    def _epoch_reporter(self, study: optuna.Study, members: list[_Running]) -> Callable[[dict[int, Epoch]], set[int]]:
        """Report one epoch of some members (by index); returns those to stop (pruned or lost)."""

        def on_epoch(records: dict[int, Epoch]) -> set[int]:
            for i, record in records.items():
                members[i].epochs_run = record.epoch + 1
            alive = reports.report(
                self._engine, [(members[i].trial._trial_id, r.epoch, r.metric) for i, r in records.items()]
            )
            for i in records:
                members[i].lost = members[i].trial._trial_id not in alive
            # After its last epoch a trial is complete: there is nothing left to prune.
            asked = [i for i, r in records.items() if not members[i].lost and r.epoch + 1 < members[i].config["epochs"]]
            verdicts = prune_together(study, [members[i].trial._trial_id for i in asked])
            return {i for i, prune in zip(asked, verdicts) if prune} | {i for i in records if members[i].lost}

        return on_epoch

    def _run_one(self, study: optuna.Study, running: _Running) -> list[tuple[str, str | None]]:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
        on_epoch = self._epoch_reporter(study, [running])
        try:
            result = train(
                self._make_model,
                self._data,
                running.config,
                self._opened.spec.metric,
                on_epoch=lambda record: not on_epoch({0: record}),
                should_stop=self._stop.is_set,
                precision=self.options.precision,
            )
        except Diverged as e:
            return self._finish(study, [(running, "diverged", None, e.reason, None)])
        except Interrupted:
            return self._finish(study, [(running, "interrupted", None, "worker was stopped", None)])
        except HpsearchError as e:
            return self._finish(study, [(running, "failed", None, str(e), None)])
        except Exception as e:  # a user model, CUDA out of memory: the trial fails, the search goes on
            return self._finish(study, [(running, "failed", None, f"{type(e).__name__}: {e}", traceback.format_exc())])
        return self._finish(study, [(running, _ended(running, result), result, None, None)])

    def _run_cohort(self, study: optuna.Study, members: list[_Running]) -> list[tuple[str, str | None]]:
        for running in members:
            running.cohort_size = len(members)
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
        try:
            results = train_cohort(
                self._make_model,
                self._data,
                [running.config for running in members],
                self._opened.spec.metric,
                on_epoch=self._epoch_reporter(study, members),
                should_stop=self._stop.is_set,
                precision=self.options.precision,
            )
        except Interrupted:
            return self._finish(study, [(r, "interrupted", None, "worker was stopped", None) for r in members])
        except torch.OutOfMemoryError as e:
            if len(members) == 1:
                return self._finish(study, [(members[0], "failed", None, f"OutOfMemoryError: {e}", traceback.format_exc())])
            # Back off: the same members in two smaller cohorts; no trial is lost.
            if self._device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(members) // 2
            self._cohort_size = max(1, half)
            log.warning("out of memory with a cohort of %d; retrying as cohorts of %d", len(members), half)
            return self._run_cohort(study, members[:half]) + self._run_cohort(study, members[half:])
        except Exception as e:  # the whole cohort failed; each trial says why
            trace = traceback.format_exc()
            return self._finish(study, [(r, "failed", None, f"{type(e).__name__}: {e}", trace) for r in members])
        ends: list[_End] = []
        for running, result in zip(members, results):
            if isinstance(result, Diverged):
                ends.append((running, "diverged", None, result.reason, None))
            else:
                ends.append((running, _ended(running, result), result, None, None))
        return self._finish(study, ends)

    def _finish(self, study: optuna.Study, ends: list[_End]) -> list[tuple[str, str | None]]:
        """Record how each trial ended, in one transaction per table, and tell Optuna."""
        attrs: list[tuple[int, str, Any]] = []
        for running, outcome, result, error, _ in ends:
            trial_id = running.trial._trial_id
            attrs.append((trial_id, "cohort_size", running.cohort_size))
            if result is not None:
                attrs.append((trial_id, "train_seconds", round(result.seconds, 3)))
            if outcome == "diverged":
                attrs.append((trial_id, "diverged", error))
            elif outcome in ("failed", "interrupted"):
                attrs.append((trial_id, "error", (error or "")[:1000]))
        reports.set_attrs(self._engine, attrs)
        peak = torch.cuda.max_memory_allocated(self._device) if self._device.type == "cuda" else None
        outcomes: list[tuple[str, str | None]] = []
        rows = []
        for running, outcome, result, error, trace in ends:
            trial = running.trial
            try:
                if outcome == "complete":
                    study.tell(trial, result.metric)  # type: ignore[union-attr]
                elif outcome in ("pruned", "diverged"):
                    study.tell(trial, state=TrialState.PRUNED)
                elif outcome in ("failed", "interrupted"):
                    study.tell(trial, state=TrialState.FAIL)
                    if outcome == "interrupted":
                        self._interrupted(study, rdb(study).get_trial(trial._trial_id))
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as e:
                # Failed as stale elsewhere while this worker was slow; that verdict stands.
                log.warning("trial %d was already finished elsewhere: %s", trial.number, e)
                outcome = "lost"
            finally:
                self._heartbeat.discard(trial._trial_id)
                self._running.pop(trial.number, None)
            value = f" {self._opened.spec.metric}={result.metric:.4f}" if outcome == "complete" and result else ""
            log.info("trial %d %s%s%s", trial.number, outcome, value, f": {error}" if error else "")
            outcomes.append((outcome, error))
            if running.run_id is not None:
                rows.append(
                    dict(
                        run_id=running.run_id, outcome=outcome, cohort_size=running.cohort_size,
                        epochs_run=running.epochs_run, train_seconds=result.seconds if result else None,
                        peak_memory_bytes=peak, error=trace or error,
                    )
                )
        tables.end_trial_runs(self._engine, rows)
        return outcomes

    def _abandon_running(self, study: optuna.Study) -> None:
        """On the way out (forced stop, crash): fail and re-queue what is still running."""
        if not self._running:
            return
        try:
            self._finish(study, [(r, "interrupted", None, "worker exited mid-trial", None) for r in self._running.values()])
        except Exception as e:  # the database may be the reason we are exiting
            log.warning("could not release running trials %s: %s", sorted(self._running), e)


def _ended(running: _Running, result: TrainResult) -> str:
    if running.lost:
        return "lost"
    return "pruned" if result.pruned else "complete"


def handle_signals(worker: Worker) -> None:
    """SIGTERM / Ctrl-C: stop after re-queuing the running trials; a second Ctrl-C forces."""

    def on_signal(signum: int, _frame: Any) -> None:
        if worker.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
