"""A worker's bookkeeping around training: asking for trials, reporting epochs, telling ends.

A cohort of K trials costs a constant number of transactions per step, whatever K is:
beginning it, one claims K trials (`db/claims.py`), one stores the K configs sampled from one
read of the study (`search/cohort_sampling.py`), one starts K run rows; each epoch's K
reports (and the pruner's K verdicts, from one snapshot) take one; its K ends take one for
Optuna's states, values and attributes, one for the run rows (and one to re-queue the
interrupted ones). The heartbeat is one statement per interval for all of them.
`seconds` keeps the time spent in each phase, for `hpsearch bench --bookkeeping`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import Counter
from typing import Iterator

import optuna
import torch

from ..config.space import suggest_config, trial_seed
from ..config.spec import StudySpec
from ..db import bulk, claims, runs
from ..db.storage import rdb
from ..outcomes import TrialOutcome
from ..search.cohort_sampling import sample_cohort
from ..search.recovery import Requeue, release
from ..search.snapshot import prune_together
from ..training.cohort import CohortCallback
from ..training.results import Epoch
from .attempts import OPTUNA_STATE, Attempt, End, attributes, interrupted, run_row, trial_end
from .engine import Trainer, engine_for
from .heartbeat import Heartbeat

log = logging.getLogger("hpsearch.worker")


class Bookkeeper:
    """Everything a worker writes about its trials, and the trials it is running."""

    def __init__(self, study: optuna.Study, spec: StudySpec, trainer: Trainer, heartbeat: Heartbeat, launch_id: int | None):
        self.study = study
        self.spec = spec
        self.trainer = trainer
        self.heartbeat = heartbeat
        self.launch_id = launch_id
        self.db = rdb(study).engine
        self.host = socket.gethostname()
        self.running: dict[int, Attempt] = {}  # by trial number
        self.seconds: Counter[str] = Counter()  # asking, reporting, telling

    def begin(self, size: int) -> list[Attempt]:
        """Claim up to `size` trials within the budget, sample them all from one read of the
        study, and record them: a few transactions, whatever `size` is."""
        spec, study, trainer = self.spec, self.study, self.trainer
        with self._timed("asking"):
            claimed = claims.claim(self.db, study._study_id, spec.search.n_trials, size)
            if not claimed:
                return []
            attempts = [Attempt(member.trial_id, member.number) for member in claimed]
            for attempt in attempts:
                self.running[attempt.number] = attempt  # released on the way out, whatever happens
            self.heartbeat.add([member.trial_id for member in claimed])
            shared = {"device": trainer.device_name, "host": self.host, "precision": trainer.precision}

            def suggest(trial: optuna.Trial) -> tuple[int, dict]:
                # A queued trial may carry its seed (a comparison's re-runs); a retried trial
                # keeps the seed of the trial it retries, so it reproduces it.
                given = trial.user_attrs.get("seed")
                root = int(trial.user_attrs.get("retry_of", trial.number))
                seed = int(given) if given is not None else trial_seed(spec.train.seed, root)
                config = suggest_config(trial, spec, seed)
                for key, value in {"config": config, **shared, "engine": engine_for(trainer, config)}.items():
                    trial.set_user_attr(key, value)
                return seed, config

            for attempt, (trial, (seed, config)) in zip(attempts, sample_cohort(study, claimed, suggest)):
                attempt.trial, attempt.seed, attempt.config = trial, seed, config
            run_ids = runs.start_trial_runs(
                self.db,
                [
                    dict(
                        trial_id=a.trial_id, launch_id=self.launch_id, host=self.host, pid=os.getpid(),
                        device=trainer.device_name, engine=engine_for(trainer, a.config), cohort_size=1, seed=a.seed,
                    )
                    for a in attempts
                ],
            )
            for attempt, run_id in zip(attempts, run_ids):
                attempt.run_id = run_id
        return attempts

    def epoch_reporter(self, members: list[Attempt]) -> CohortCallback:
        """Report one epoch of some members (by index); returns those to stop (pruned or lost)."""

        def on_epoch(records: dict[int, Epoch]) -> set[int]:
            with self._timed("reporting"):
                return report(records)

        def report(records: dict[int, Epoch]) -> set[int]:
            for i, record in records.items():
                members[i].epochs_run = record.epoch + 1
                members[i].last_value = record.metric
            alive = bulk.report(self.db, [(members[i].trial_id, r.epoch, r.metric) for i, r in records.items()])
            for i in records:
                members[i].lost = members[i].trial_id not in alive
            # After its last epoch a trial is complete: there is nothing left to prune.
            asked = [i for i, r in records.items() if not members[i].lost and r.epoch + 1 < members[i].config["epochs"]]
            verdicts = prune_together(self.study, [members[i].trial_id for i in asked])
            return {i for i, prune in zip(asked, verdicts) if prune} | {i for i in records if members[i].lost}

        return on_epoch

    def finish(self, ends: list[End]) -> list[End]:
        """Record how each trial ended: states, values and attributes in one transaction (as
        Optuna's `tell` stores them), interrupted trials failed and re-queued in another,
        run rows in a third."""
        with self._timed("telling"):
            return self._finish(ends)

    def _finish(self, ends: list[End]) -> list[End]:
        device = self.trainer.device
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        told_ends = [end for end in ends if end.outcome in OPTUNA_STATE and end.outcome != TrialOutcome.INTERRUPTED]
        told_values = [trial_end(end) for end in told_ends]  # before the attributes: NaN fails
        attrs = [(end.attempt.trial_id, key, value) for end in ends for key, value in attributes(end)]
        # `tell` would also call the sampler's `after_trial`: Optuna's samplers do nothing there
        # outside `study.optimize` (constraints, which a study file cannot give, aside) but the
        # grid's `study.stop()`, which only `optimize` may call.
        told = bulk.end_trials(self.db, told_values, attrs)
        by_reason: dict[str, list[int]] = {}
        for end in ends:
            if end.outcome == TrialOutcome.INTERRUPTED:
                by_reason.setdefault(end.error or "worker was stopped", []).append(end.attempt.trial_id)
        requeued: set[int] = set()  # by number
        for reason, ids in by_reason.items():  # an interrupted trial always runs again
            requeued.update(release(self.study, ids, reason, Requeue(None)))
        for end in ends:
            attempt = end.attempt
            if end.outcome == TrialOutcome.INTERRUPTED:
                gone = attempt.number not in requeued
            else:
                gone = end.outcome in OPTUNA_STATE and attempt.trial_id not in told
            if gone:
                # Failed as stale elsewhere while this worker was slow; that verdict stands.
                log.warning("trial %d was already finished elsewhere", attempt.number)
                end.outcome = TrialOutcome.LOST
            self.heartbeat.discard(attempt.trial_id)
            self.running.pop(attempt.number, None)
            value_text = f" {self.spec.metric}={end.result.metric:.4f}" if end.outcome == TrialOutcome.COMPLETE and end.result else ""
            log.info("trial %d %s%s%s", attempt.number, end.outcome, value_text, f": {end.error}" if end.error else "")
        runs.end_trial_runs(self.db, [run_row(end, peak) for end in ends if end.attempt.run_id is not None])
        return ends

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def abandon(self) -> None:
        """On the way out (forced stop, crash): fail and re-queue what is still running."""
        if not self.running:
            return
        try:
            self.finish([interrupted(a, "worker exited mid-trial") for a in self.running.values()])
        except Exception as e:  # the database may be the reason we are exiting
            log.warning("could not release running trials %s: %s", sorted(self.running), e)
