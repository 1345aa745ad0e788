"""Managing studies and launches from any shell: list launches, stop a study, delete a study.

A live launch whose launcher stopped beating for longer than its study's grace period is
listed as `lost` (its launcher was killed); the next launch of the study closes it so.

`stop` works through the database, as a Dask task's stop does: the study's running launches
are marked `stopping`, and every worker sees that while it beats, takes no new trial and
re-queues the ones it is running. So it reaches workers on any machine.
"""

from __future__ import annotations

from typing import Any

from ..db import launches
from ..db.storage import open_storage
from ..db.urls import resolve_url
from ..errors import HpsearchError, StorageError
from ..outcomes import LaunchOutcome
from ..search.study import delete_study, load_plain_study, open_study


def launch_rows(storage: str | None, study_name: str | None = None) -> list[dict[str, Any]]:
    st = open_storage(resolve_url(storage), read_only=True)
    if study_name is not None:
        load_plain_study(st, study_name)  # a misspelt name says which studies there are
    rows = launches.launch_rows(st.engine, study_name)
    graces: dict[str, float | None] = {}
    for row in rows:
        if row["silent_seconds"] is None:
            continue
        if row["study"] not in graces:
            graces[row["study"]] = _grace_seconds(st, row["study"])
        grace = graces[row["study"]]
        if grace is not None and launches.is_lost(row["state"], row["silent_seconds"], grace):
            row["state"] = LaunchOutcome.LOST
    return rows


def _grace_seconds(storage: Any, study_name: str) -> float | None:
    """The study's grace period, from its stored study file; None when it cannot be read."""
    try:
        return float(open_study(storage, study_name).spec.search.grace_seconds)
    except HpsearchError:
        return None


def stop(storage: str | None, study_name: str) -> list[int]:
    """Ask the study's running launches and their workers to stop; the launch ids asked."""
    st = open_storage(resolve_url(storage))
    load_plain_study(st, study_name)
    _close_lost(st, study_name)  # a killed launcher has nothing left to stop
    return launches.request_study_stop(st.engine, study_name)


def _close_lost(storage: Any, study_name: str) -> None:
    grace = _grace_seconds(storage, study_name)
    if grace is not None:
        launches.close_lost(storage.engine, grace, study_name=study_name)




def delete(storage: str | None, study_name: str, force: bool = False) -> int:
    """Remove a study, its trials and hpsearch's rows about it; the number of trials removed.

    A study with a running launch is refused: stop it first, or its workers would go on
    writing into a study that no longer exists. A launch whose launcher was killed counts
    until it is lost (its heartbeat older than the study's grace period); `force` deletes anyway.
    """
    st = open_storage(resolve_url(storage))
    load_plain_study(st, study_name)
    _close_lost(st, study_name)
    running = [
        row["launch"]
        for row in launches.launch_rows(st.engine, study_name)
        if row["state"] in (LaunchOutcome.RUNNING, LaunchOutcome.STOPPING)
    ]
    if running and not force:
        ids = ", ".join(str(i) for i in running)
        raise StorageError(
            f"study {study_name!r} has a running launch ({ids}); stop it first with "
            f"'hpsearch stop {study_name}', or, if its launcher was killed, delete with --force"
        )
    return delete_study(st, study_name)
