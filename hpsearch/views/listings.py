"""Read a storage's studies and trials, for the terminal and for scripts (`--json`)."""

from __future__ import annotations

from typing import Any

import optuna

from ..db.storage import open_storage, schema_versions
from ..db.urls import mask_url, resolve_url
from ..errors import StorageError
from ..search.budget import best_so_far, best_trial, counts
from ..search.study import ATTR, load_plain_study


def study_rows(storage: str | None) -> list[dict[str, Any]]:
    st = open_storage(resolve_url(storage), read_only=True)
    rows = []
    for summary in optuna.get_all_study_summaries(st, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=st)
        state = counts(study)
        several = len(summary.directions) > 1  # another tool's multi-objective study: no one best
        best = None if several else best_so_far(study)
        rows.append(
            {
                "study": summary.study_name,
                "direction": "multi-objective" if several else summary.direction.name.lower(),
                "metric": study.user_attrs.get(ATTR, {}).get("metric"),
                "complete": state.get("COMPLETE", 0),
                "pruned": state.get("PRUNED", 0),
                "failed": state.get("FAIL", 0),
                "running": state.get("RUNNING", 0),
                "best_value": best[1] if best else None,
                "best_trial": best[0] if best else None,
                "started": summary.datetime_start.isoformat(timespec="seconds") if summary.datetime_start else None,
            }
        )
    return rows


def trial_rows(storage: str | None, study_name: str) -> list[dict[str, Any]]:
    study = load_plain_study(open_storage(resolve_url(storage), read_only=True), study_name)
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        note = attrs.get("diverged") or attrs.get("error")
        if "retry_of" in attrs:
            note = f"retry of trial {attrs['retry_of']}" + (f"; {note}" if note else "")
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                "params": t.params,
                "config": attrs.get("config"),
                "device": attrs.get("device"),
                "train_seconds": attrs.get("train_seconds"),
                "epochs": len(t.intermediate_values),
                "note": note,
            }
        )
    return rows


def best(storage: str | None, study_name: str) -> dict[str, Any]:
    """The best complete trial of a study: its number, value, config and params."""
    url = resolve_url(storage)
    study = load_plain_study(open_storage(url, read_only=True), study_name)
    trial = best_trial(study)
    if trial is None:
        raise StorageError(f"study {study_name!r} in {mask_url(url)} has no complete trial yet")
    return {
        "study": study_name,
        "number": trial.number,
        "value": trial.value,
        "metric": study.user_attrs.get(ATTR, {}).get("metric", "value"),
        "config": trial.user_attrs.get("config"),
        "params": trial.params,
    }


def environment(storage: str | None) -> dict[str, Any]:
    from ..training.device import devices, versions

    url = resolve_url(storage)
    try:
        v = schema_versions(url)
        schema = f"Optuna {v.optuna_current or 'none'}, hpsearch {v.ours_current or 'none'}" + (
            " (up to date)" if v.up_to_date else " (behind: run hpsearch db upgrade)"
        )
    except StorageError as e:
        schema = str(e)
    return {"versions": versions(), "devices": devices(), "storage": mask_url(url), "schema": schema}
