"""A worker's bookkeeping around training: asking for trials, reporting epochs, telling ends.

A cohort of K trials costs a constant number of transactions per step: its K configs are
written in one transaction and its K run rows in another; each epoch's K reports (and the
pruner's K verdicts, from one snapshot) take one; its K ends take one per table, plus
Optuna's tell per trial.
"""

from __future__ import annotations

import logging
import os
import socket

import optuna
import torch

from ..config.space import suggest_config, trial_seed
from ..config.spec import StudySpec
from ..db import bulk, runs
from ..db.storage import rdb
from ..outcomes import TrialOutcome
from ..search.budget import claims_a_slot
from ..search.recovery import Requeue
from ..search.snapshot import prune_together
from ..training.cohort import CohortCallback
from ..training.results import Epoch
from .attempts import OPTUNA_STATE, Attempt, End, attributes, interrupted, run_row
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
        self._requeue_interrupted = Requeue(None)  # an interrupted trial always runs again

    def begin(self, size: int) -> list[Attempt]:
        """Ask for up to `size` trials within the budget, sample each, record them all."""
        spec, study = self.spec, self.study
        attempts: list[Attempt] = []
        for _ in range(size):
            # Each trial is sampled as soon as it is asked for, before the next is asked:
            # the sampler then reads fewer running trials.
            trial = study.ask()
            if not claims_a_slot(study, trial.number, spec.search.n_trials):
                # The slot went to another worker's trial or to a queued one numbered lower
                # (a retry committed a moment ago): give this one back to the queue.
                study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.WAITING)
                break
            attempt = Attempt(trial=trial)
            self.running[trial.number] = attempt  # released on the way out, whatever happens
            self.heartbeat.add(trial._trial_id)
            # A queued trial may carry its seed (a comparison's re-runs); a retried trial keeps
            # the seed of the trial it retries, so it reproduces it.
            given = trial.user_attrs.get("seed")
            root = int(trial.user_attrs.get("retry_of", trial.number))
            attempt.seed = int(given) if given is not None else trial_seed(spec.train.seed, root)
            attempt.config = suggest_config(trial, spec, attempt.seed)
            attempts.append(attempt)
        if not attempts:  # nothing to record (an empty write would still lock SQLite)
            return attempts
        trainer = self.trainer
        shared = {"device": trainer.device_name, "host": self.host, "precision": trainer.precision}
        bulk.set_attrs(
            self.db,
            [(a.trial_id, "config", a.config) for a in attempts]
            + [(a.trial_id, key, value) for a in attempts for key, value in shared.items()]
            + [(a.trial_id, "engine", engine_for(trainer, a.config)) for a in attempts],
        )
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
            for i, record in records.items():
                members[i].epochs_run = record.epoch + 1
            alive = bulk.report(self.db, [(members[i].trial_id, r.epoch, r.metric) for i, r in records.items()])
            for i in records:
                members[i].lost = members[i].trial_id not in alive
            # After its last epoch a trial is complete: there is nothing left to prune.
            asked = [i for i, r in records.items() if not members[i].lost and r.epoch + 1 < members[i].config["epochs"]]
            verdicts = prune_together(self.study, [members[i].trial_id for i in asked])
            return {i for i, prune in zip(asked, verdicts) if prune} | {i for i in records if members[i].lost}

        return on_epoch

    def finish(self, ends: list[End]) -> list[End]:
        """Record how each trial ended, in one transaction per table, and tell Optuna."""
        bulk.set_attrs(self.db, [(end.attempt.trial_id, key, value) for end in ends for key, value in attributes(end)])
        device = self.trainer.device
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        told: list[End] = []
        for end in ends:
            trial = end.attempt.trial
            try:
                if end.outcome in OPTUNA_STATE:
                    value = end.result.metric if end.outcome == TrialOutcome.COMPLETE else None  # type: ignore[union-attr]
                    self.study.tell(trial, value, state=OPTUNA_STATE[end.outcome])
                if end.outcome == TrialOutcome.INTERRUPTED:
                    self._requeue_interrupted(self.study, rdb(self.study).get_trial(trial._trial_id))
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as e:
                # Failed as stale elsewhere while this worker was slow; that verdict stands.
                log.warning("trial %d was already finished elsewhere: %s", trial.number, e)
                end.outcome = TrialOutcome.LOST
            finally:
                self.heartbeat.discard(trial._trial_id)
                self.running.pop(trial.number, None)
            value_text = f" {self.spec.metric}={end.result.metric:.4f}" if end.outcome == TrialOutcome.COMPLETE and end.result else ""
            log.info("trial %d %s%s%s", trial.number, end.outcome, value_text, f": {end.error}" if end.error else "")
            told.append(end)
        runs.end_trial_runs(self.db, [run_row(end, peak) for end in told if end.attempt.run_id is not None])
        return told

    def abandon(self) -> None:
        """On the way out (forced stop, crash): fail and re-queue what is still running."""
        if not self.running:
            return
        try:
            self.finish([interrupted(a, "worker exited mid-trial") for a in self.running.values()])
        except Exception as e:  # the database may be the reason we are exiting
            log.warning("could not release running trials %s: %s", sorted(self.running), e)
