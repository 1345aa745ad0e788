"""Launches and study files: what was run, from which file, and how it ended.

A launch's row is also how its workers are told to stop from afar (a Dask task, a worker on
another machine): its outcome becomes `stopping`, and every worker looks while it beats.

The launcher beats its row (`heartbeat_at`, by the database's clock, as Optuna's trial
heartbeats). A running launch whose beats stopped for longer than its study's grace period
lost its launcher (kill -9, a dead machine): listings show it `lost`, its workers stop, and
the next launch or worker of the study that sees it closes it as `lost`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..outcomes import LaunchOutcome
from .tables import db_now, launches, now, study_files

LIVE = (LaunchOutcome.RUNNING, LaunchOutcome.STOPPING)  # states a launcher keeps beating


def record_study_file(conn: Connection, sha256: str, name: str, path: str, text: str) -> None:
    """Keep a study file's text once per content hash."""
    exists = conn.execute(sa.select(study_files.c.sha256).where(study_files.c.sha256 == sha256)).first()
    if exists is None:
        conn.execute(
            study_files.insert().values(sha256=sha256, name=name, path=path, text=text, first_seen=now())
        )


def study_file_text(db: Engine, sha256: str) -> tuple[str, str] | None:
    """(path, text) of a recorded study file."""
    with db.connect() as conn:
        row = conn.execute(
            sa.select(study_files.c.path, study_files.c.text).where(study_files.c.sha256 == sha256)
        ).first()
    return None if row is None else (row.path, row.text)


def start_launch(db: Engine, **values: Any) -> int:
    values["devices"] = json.dumps(values.get("devices", []))
    with db.begin() as conn:
        result = conn.execute(
            launches.insert().values(started_at=now(), heartbeat_at=sa.func.now(), outcome=LaunchOutcome.RUNNING, **values)
        )
        return int(result.inserted_primary_key[0])


def beat(db: Engine, launch_id: int) -> None:
    """Record that the launcher is alive (not for a launch already closed, e.g. as lost)."""
    with db.begin() as conn:
        conn.execute(
            launches.update()
            .where(launches.c.launch_id == launch_id, launches.c.ended_at.is_(None))
            .values(heartbeat_at=sa.func.now())
        )


def _stale(db_now: dt.datetime, grace_seconds: float) -> Any:
    """Live launches silent for longer than the grace period. A row from before heartbeats
    (schema 0003) has none: it is judged by its start, written by the launcher's clock (UTC)."""
    grace = dt.timedelta(seconds=grace_seconds)
    return sa.and_(
        launches.c.outcome.in_(LIVE),
        sa.or_(
            launches.c.heartbeat_at < db_now - grace,
            sa.and_(launches.c.heartbeat_at.is_(None), launches.c.started_at < now() - grace),
        ),
    )


def close_lost(db: Engine, grace_seconds: float, study_name: str | None = None, launch_id: int | None = None) -> list[int]:
    """Close as lost the live launches (of a study, or one launch) whose launcher stopped
    beating; their ids. The update re-checks staleness, so a launch that beat meanwhile stays."""
    with db.begin() as conn:
        stale = _stale(db_now(conn), grace_seconds)
        query = sa.select(launches.c.launch_id).where(stale)
        if study_name is not None:
            query = query.where(launches.c.study_name == study_name)
        if launch_id is not None:
            query = query.where(launches.c.launch_id == launch_id)
        ids = [row.launch_id for row in conn.execute(query)]
        if ids:
            conn.execute(
                launches.update().where(launches.c.launch_id.in_(ids), stale).values(outcome=LaunchOutcome.LOST, ended_at=now())
            )
    return ids


def end_launch(db: Engine, launch_id: int, outcome: LaunchOutcome, devices: list[str] | None = None) -> None:
    """Close a launch's row: how it ended and, when known, the devices its workers used."""
    values: dict[str, Any] = {"ended_at": now(), "outcome": outcome}
    if devices is not None:
        values.update(devices=json.dumps(devices), n_workers=len(devices))
    with db.begin() as conn:
        conn.execute(launches.update().where(launches.c.launch_id == launch_id).values(**values))


def request_stop(db: Engine, launch_id: int | None) -> None:
    """Ask every worker of a launch to stop (they look while they beat)."""
    if launch_id is None:
        return
    with db.begin() as conn:
        conn.execute(
            launches.update()
            .where(launches.c.launch_id == launch_id, launches.c.outcome == LaunchOutcome.RUNNING)
            .values(outcome=LaunchOutcome.STOPPING)
        )


def stop_requested(db: Engine, launch_id: int | None, grace_seconds: float | None = None) -> LaunchOutcome | None:
    """Why a worker of this launch must stop: `stopping` (asked to), `lost` (with a grace
    period: its launcher stopped beating; the launch is then closed as lost), or None.

    One SELECT while the launch is well: workers run it at every heartbeat."""
    if launch_id is None:
        return None
    with db.connect() as conn:
        row = conn.execute(
            sa.select(launches.c.outcome, launches.c.heartbeat_at, launches.c.started_at, sa.func.now(type_=sa.DateTime).label("db_now"))
            .where(launches.c.launch_id == launch_id)
        ).first()
        conn.rollback()
    if row is None:
        return None
    if row.outcome == LaunchOutcome.LOST:
        return LaunchOutcome.LOST
    silent = silent_seconds(row.outcome, row.heartbeat_at, row.started_at, row.db_now.replace(tzinfo=None))
    if grace_seconds is not None and is_lost(row.outcome, silent, grace_seconds):
        if close_lost(db, grace_seconds, launch_id=launch_id):  # else it beat just now, or another
            return LaunchOutcome.LOST  # worker closed it: the next look reads `lost`
    return LaunchOutcome.STOPPING if row.outcome == LaunchOutcome.STOPPING else None


def silent_seconds(
    outcome: str, heartbeat_at: dt.datetime | None, started_at: dt.datetime | None, db_now: dt.datetime
) -> float | None:
    """Seconds since a live launch's last beat (or its start, for a row from before beats)."""
    if outcome not in LIVE:
        return None
    if heartbeat_at is not None:
        return max(0.0, (db_now - heartbeat_at).total_seconds())
    return max(0.0, (now() - started_at).total_seconds()) if started_at is not None else None


def is_lost(outcome: str, silent: float | None, grace_seconds: float) -> bool:
    """A live launch silent for longer than its study's grace period lost its launcher."""
    return outcome in LIVE and silent is not None and silent > grace_seconds


def forget_study(db: Engine, study_id: int) -> None:
    """Remove hpsearch's rows about a study (its trial runs and launches), before Optuna's.

    The foreign keys cascade on PostgreSQL and MySQL, but SQLite enforces them only when
    asked; deleting explicitly is the same on all three. Study files stay: they are shared
    by content with any other study run from the same file.
    """
    from .tables import optuna_trials, trial_runs

    with db.begin() as conn:
        trial_ids = sa.select(optuna_trials.c.trial_id).where(optuna_trials.c.study_id == study_id)
        conn.execute(trial_runs.delete().where(trial_runs.c.trial_id.in_(trial_ids)))
        launch_ids = sa.select(launches.c.launch_id).where(launches.c.study_id == study_id)
        conn.execute(trial_runs.delete().where(trial_runs.c.launch_id.in_(launch_ids)))
        conn.execute(launches.delete().where(launches.c.study_id == study_id))


def request_study_stop(db: Engine, study_name: str) -> list[int]:
    """Ask every running launch of a study (and so its workers) to stop; their ids."""
    with db.begin() as conn:
        ids = [
            row.launch_id
            for row in conn.execute(
                sa.select(launches.c.launch_id).where(
                    launches.c.study_name == study_name, launches.c.outcome == LaunchOutcome.RUNNING
                )
            )
        ]
        if ids:
            conn.execute(launches.update().where(launches.c.launch_id.in_(ids)).values(outcome=LaunchOutcome.STOPPING))
    return ids


def launch_rows(db: Engine, study_name: str | None = None) -> list[dict[str, Any]]:
    """Launches (newest first) with the workers that ran trials for them: host, pid, device,
    and, for a live one, the seconds since its last beat (`is_lost` judges them)."""
    from .tables import trial_runs

    query = sa.select(launches).order_by(launches.c.launch_id.desc())
    if study_name is not None:
        query = query.where(launches.c.study_name == study_name)
    with db.connect() as conn:
        clock = db_now(conn)
        rows = [dict(row._mapping) for row in conn.execute(query)]
        workers = conn.execute(
            sa.select(
                trial_runs.c.launch_id,
                trial_runs.c.host,
                trial_runs.c.pid,
                trial_runs.c.device,
                sa.func.count().label("runs"),
                sa.func.sum(sa.case((trial_runs.c.outcome == "running", 1), else_=0)).label("running"),
            )
            .where(trial_runs.c.launch_id.in_([row["launch_id"] for row in rows]))
            .group_by(trial_runs.c.launch_id, trial_runs.c.host, trial_runs.c.pid, trial_runs.c.device)
        ).all()
        conn.rollback()
    by_launch: dict[int, list[dict[str, Any]]] = {}
    for w in workers:
        by_launch.setdefault(w.launch_id, []).append(
            {"host": w.host, "pid": w.pid, "device": w.device, "trial_runs": int(w.runs), "running": int(w.running or 0)}
        )
    return [
        {
            "launch": row["launch_id"],
            "study": row["study_name"],
            "state": row["outcome"],
            "host": row["host"],
            "user": row["username"],
            "started": row["started_at"].isoformat(timespec="seconds") if row["started_at"] else None,
            "ended": row["ended_at"].isoformat(timespec="seconds") if row["ended_at"] else None,
            "silent_seconds": _rounded(silent_seconds(row["outcome"], row["heartbeat_at"], row["started_at"], clock)),
            "n_workers": row["n_workers"],
            "workers": sorted(by_launch.get(row["launch_id"], []), key=lambda w: (w["host"], w["pid"])),
        }
        for row in rows
    ]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
