"""A trial a worker is running, and how it ended: the one place that maps what an engine
returned or raised to an outcome, and an outcome to what Optuna and hpsearch's tables record.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from ..db.bulk import TrialEnd
from ..errors import HpsearchError
from ..outcomes import TrialOutcome
from ..training.results import Diverged, Interrupted, TrainResult

# The state Optuna records for each outcome (a lost trial was already told by another worker).
OPTUNA_STATE = {
    TrialOutcome.COMPLETE: TrialState.COMPLETE,
    TrialOutcome.PRUNED: TrialState.PRUNED,
    TrialOutcome.DIVERGED: TrialState.PRUNED,
    TrialOutcome.FAILED: TrialState.FAIL,
    TrialOutcome.INTERRUPTED: TrialState.FAIL,
}
ERROR_ATTR_CHARS = 1000  # the `error` user attribute is a summary; the run row keeps it all


@dataclass
class Attempt:
    """A trial this worker has claimed and not yet told."""

    trial_id: int
    number: int
    trial: optuna.Trial | None = None  # once sampled
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    epochs_run: int = 0
    cohort_size: int = 1
    lost: bool = False  # another worker failed it as stale while it ran
    last_value: float | None = None  # the last value it reported (a pruned trial's value)


@dataclass
class End:
    """How one attempt ended."""

    attempt: Attempt
    outcome: TrialOutcome
    result: TrainResult | None = None
    error: str | None = None  # one line, for people
    trace: str | None = None  # the traceback of an unexpected exception, for the run row


def ended(attempt: Attempt, result: TrainResult | Diverged) -> End:
    """The end of an attempt whose training returned (a cohort member's result)."""
    if isinstance(result, Diverged):
        return End(attempt, TrialOutcome.DIVERGED, error=result.reason)
    if attempt.lost:
        return End(attempt, TrialOutcome.LOST, result)
    return End(attempt, TrialOutcome.PRUNED if result.pruned else TrialOutcome.COMPLETE, result)


def raised(attempt: Attempt, error: BaseException, trace: str | None = None) -> End:
    """The end of an attempt whose training raised `error` (call inside the `except`)."""
    if isinstance(error, Diverged):
        return End(attempt, TrialOutcome.DIVERGED, error=error.reason)
    if isinstance(error, Interrupted):
        return End(attempt, TrialOutcome.INTERRUPTED, error="worker was stopped")
    if isinstance(error, HpsearchError):
        return End(attempt, TrialOutcome.FAILED, error=str(error))
    # A user model, CUDA out of memory: the trial fails, the search goes on.
    return End(attempt, TrialOutcome.FAILED, error=f"{type(error).__name__}: {error}", trace=trace or traceback.format_exc())


def trial_end(end: End) -> TrialEnd:
    """What Optuna's `tell` would store for this end (not for an interrupted one: it is
    re-queued). A pruned trial's value is its last reported one, as `tell` gives it."""
    state = OPTUNA_STATE[end.outcome]
    value = None
    if end.outcome == TrialOutcome.COMPLETE and end.result is not None:
        value = end.result.metric
    elif state == TrialState.PRUNED:
        value = end.attempt.last_value
    if value is not None and math.isnan(value):
        # `tell` refuses NaN for a complete trial and drops it for a pruned one.
        if state == TrialState.COMPLETE:
            end.outcome, end.error, state = TrialOutcome.FAILED, f"the metric was {value}", TrialState.FAIL
        value = None
    return TrialEnd(end.attempt.trial_id, state, None if state == TrialState.FAIL else value)


def interrupted(attempt: Attempt, reason: str) -> End:
    return End(attempt, TrialOutcome.INTERRUPTED, error=reason)


def attributes(end: End) -> list[tuple[str, Any]]:
    """The user attributes an end adds to its trial."""
    attrs: list[tuple[str, Any]] = [("cohort_size", end.attempt.cohort_size)]
    if end.result is not None:
        attrs.append(("train_seconds", round(end.result.seconds, 3)))
    if end.outcome == TrialOutcome.DIVERGED:
        attrs.append(("diverged", end.error))
    elif end.outcome in (TrialOutcome.FAILED, TrialOutcome.INTERRUPTED):
        attrs.append(("error", (end.error or "")[:ERROR_ATTR_CHARS]))
    return attrs


def run_row(end: End, peak_memory: int | None) -> dict[str, Any]:
    """The values that close the attempt's row in `hpsearch_trial_runs`."""
    return dict(
        run_id=end.attempt.run_id,
        outcome=end.outcome,
        cohort_size=end.attempt.cohort_size,
        epochs_run=end.attempt.epochs_run,
        train_seconds=end.result.seconds if end.result else None,
        peak_memory_bytes=peak_memory,
        error=end.trace or end.error,
    )
