"""The words for how things end: a trial's attempt, a worker, a launch.

One vocabulary shared by the worker, the launcher, the tables (`hpsearch_trial_runs.outcome`,
`hpsearch_launches.outcome`) and the commands that show them. They are `StrEnum`s, so the
database stores and the JSON output shows the plain words.
"""

from enum import StrEnum


class TrialOutcome(StrEnum):
    """How one attempt at a trial ended (a row of `hpsearch_trial_runs`)."""

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    DIVERGED = "diverged"  # NaN/inf loss: told to Optuna as PRUNED, the reason kept
    FAILED = "failed"  # raised: a user bug, out of memory; counts towards failures in a row
    INTERRUPTED = "interrupted"  # the worker was stopped; the trial is re-queued
    LOST = "lost"  # another worker failed it as stale while this one ran it


class WorkerStop(StrEnum):
    """Why a worker stopped taking trials."""

    BUDGET = "budget"  # the study holds n_trials finished trials
    TIMEOUT = "timeout"  # the launch's deadline passed
    STOPPED = "stopped"  # SIGTERM, Ctrl-C or a stop request in the database
    FAILING = "failing"  # trials kept failing


class LaunchOutcome(StrEnum):
    """A launch's state (a row of `hpsearch_launches`): running until it ends."""

    RUNNING = "running"
    STOPPING = "stopping"  # asked to stop; its workers see it while they beat
    FINISHED = "finished"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    LOST = "lost"  # its launcher stopped beating (killed); closed by the next launch or worker that saw it


# What a launch (or a worker joining on its own) ended as, given why its worker stopped.
LAUNCH_OUTCOME = {
    WorkerStop.BUDGET: LaunchOutcome.FINISHED,
    WorkerStop.TIMEOUT: LaunchOutcome.TIMEOUT,
    WorkerStop.STOPPED: LaunchOutcome.INTERRUPTED,
    WorkerStop.FAILING: LaunchOutcome.FAILED,
}
