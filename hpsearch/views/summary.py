"""What a study found: a table per optimizer and parameter importances (`hpsearch report`).

`page.py` turns the same summary into a self-contained HTML page.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna

from ..db.storage import open_storage
from ..db.urls import resolve_url
from ..search.study import ATTR, load_plain_study


@dataclass
class OptimizerRow:
    optimizer: str
    trials: int  # finished (complete + pruned)
    complete: int
    best: float | None
    median: float | None
    best_trial: int | None
    best_config: dict[str, Any] | None = field(default=None, repr=False)


@dataclass
class StudyReport:
    study: str
    metric: str
    direction: str
    rows: list[OptimizerRow]
    importances: dict[str, float] | None
    importance_note: str | None
    comparison: dict[str, Any] | None


def optimizer_of(trial: optuna.trial.FrozenTrial) -> str:
    config = trial.user_attrs.get("config") or {}
    return str(config.get("optimizer", {}).get("name") or trial.params.get("optimizer", "?"))


def summarize(study: optuna.Study) -> StudyReport:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    by_optimizer: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in finished:
        by_optimizer.setdefault(optimizer_of(trial), []).append(trial)
    rows = []
    for name, trials in sorted(by_optimizer.items()):
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        values = [t.value for t in complete if t.value is not None]
        best = (max if maximize else min)(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type, return-value]
        rows.append(
            OptimizerRow(
                optimizer=name,
                trials=len(trials),
                complete=len(complete),
                best=best.value if best else None,
                median=statistics.median(values) if values else None,
                best_trial=best.number if best else None,
                best_config=best.user_attrs.get("config") if best else None,
            )
        )
    rows.sort(key=lambda r: (r.best is None, -(r.best or 0) if maximize else (r.best or 0)))
    importances, note = _importances(study)
    attrs = study.user_attrs.get(ATTR, {})
    return StudyReport(
        study=study.study_name,
        metric=attrs.get("metric", "value"),
        direction=study.direction.name.lower(),
        rows=rows,
        importances=importances,
        importance_note=note,
        comparison=study.user_attrs.get("comparison"),
    )


def _importances(study: optuna.Study) -> tuple[dict[str, float] | None, str | None]:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 4:
        return None, f"needs at least 4 complete trials, has {len(complete)}"
    try:
        return dict(optuna.importance.get_param_importances(study)), None
    except (RuntimeError, ValueError) as e:  # e.g. a space with nothing searched
        return None, str(e).splitlines()[0]


def load(storage: str | None, study_name: str) -> tuple[optuna.Study, StudyReport]:
    study = load_plain_study(open_storage(resolve_url(storage), read_only=True), study_name)
    return study, summarize(study)
