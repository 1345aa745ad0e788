"""hpsearch's own tables, next to Optuna's in the same database.

Optuna records what was sampled and what it scored; these record how each trial ran and what
each launch was, so "which GPU ran trial 12, how long did it take, from which study file?"
is one SQL query. The alembic history in the top-level `alembic/` folder creates them; this
module declares the same shape for queries and for the test that the two agree.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Any

import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()


class ValueType(enum.Enum):
    """Optuna's trial value kinds, stored by name (a native enum on PostgreSQL)."""

    FINITE = 1
    INF_POS = 2
    INF_NEG = 3


# Optuna's tables, in part: for our foreign keys and for cheap queries on trials. Optuna
# creates and migrates them; the types match its models (enums are native on PostgreSQL).
optuna_studies = sa.Table("studies", metadata, sa.Column("study_id", sa.Integer, primary_key=True))
optuna_trials = sa.Table(
    "trials",
    metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("number", sa.Integer),
    sa.Column("study_id", sa.Integer),
    sa.Column("state", sa.Enum(TrialState, name="trialstate")),
    sa.Column("datetime_start", sa.DateTime),
)
optuna_values = sa.Table(
    "trial_values",
    metadata,
    sa.Column("trial_value_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("objective", sa.Integer),
    sa.Column("value", sa.Float),
    sa.Column("value_type", sa.Enum(ValueType, name="trialvaluetype")),
)
class IntermediateValueType(enum.Enum):
    """How Optuna stores an intermediate value (NaN and infinities have no number)."""

    FINITE = 1
    INF_POS = 2
    INF_NEG = 3
    NAN = 4


optuna_user_attrs = sa.Table(
    "trial_user_attributes",
    metadata,
    sa.Column("trial_user_attribute_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("key", sa.String(512)),
    sa.Column("value_json", sa.Text),
)
optuna_intermediate_values = sa.Table(
    "trial_intermediate_values",
    metadata,
    sa.Column("trial_intermediate_value_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("step", sa.Integer),
    sa.Column("intermediate_value", sa.Float),
    sa.Column("intermediate_value_type", sa.Enum(IntermediateValueType, name="trialintermediatevaluetype")),
)
optuna_heartbeats = sa.Table(
    "trial_heartbeats",
    metadata,
    sa.Column("trial_heartbeat_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("heartbeat", sa.DateTime),
)

study_files = sa.Table(
    "hpsearch_study_files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("first_seen", sa.DateTime, nullable=False),
)

launches = sa.Table(
    "hpsearch_launches",
    metadata,
    sa.Column("launch_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id", ondelete="CASCADE"), nullable=False),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("study_file_sha256", sa.String(64), sa.ForeignKey("hpsearch_study_files.sha256"), nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("username", sa.String(255), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("hpsearch_version", sa.String(64), nullable=False),
    sa.Column("torch_version", sa.String(64), nullable=False),
    sa.Column("optuna_version", sa.String(64), nullable=False),
    sa.Column("python_version", sa.String(64), nullable=False),
    sa.Column("cuda_version", sa.String(64), nullable=True),
    sa.Column("devices", sa.Text, nullable=False),  # JSON list of device names
    sa.Column("n_workers", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),  # running, stopping, finished, timeout, interrupted, failed
)

trial_runs = sa.Table(
    "hpsearch_trial_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("launch_id", sa.Integer, sa.ForeignKey("hpsearch_launches.launch_id", ondelete="SET NULL"), nullable=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("device", sa.String(255), nullable=False),
    sa.Column("engine", sa.String(16), nullable=False),  # train or cohort
    sa.Column("cohort_size", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("epochs_run", sa.Integer, nullable=False),
    sa.Column("train_seconds", sa.Float, nullable=True),
    sa.Column("peak_memory_bytes", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # running, complete, pruned, diverged, failed, interrupted, lost
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
)


comparisons = sa.Table(
    "hpsearch_comparisons",
    metadata,
    sa.Column("comparison_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("study_file_sha256", sa.String(64), sa.ForeignKey("hpsearch_study_files.sha256"), nullable=True),
    sa.Column("budget", sa.Integer, nullable=False),  # tuning trials per optimizer
    sa.Column("seeds", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # JSON: ranking, means, p-values, values by seed
)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """For alembic: only hpsearch's tables are ours to compare and migrate."""
    return type_ != "table" or bool(name and name.startswith("hpsearch_"))


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """For alembic: leave Optuna's tables (declared above for foreign keys) alone."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or include_name(table.name, "table", None)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


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
        result = conn.execute(launches.insert().values(started_at=now(), outcome="running", **values))
        return int(result.inserted_primary_key[0])


def end_launch(db: Engine, launch_id: int, outcome: str, devices: list[str] | None = None) -> None:
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
            .where(launches.c.launch_id == launch_id, launches.c.outcome == "running")
            .values(outcome="stopping")
        )


def stop_requested(db: Engine, launch_id: int | None) -> bool:
    if launch_id is None:
        return False
    with db.connect() as conn:
        outcome = conn.execute(sa.select(launches.c.outcome).where(launches.c.launch_id == launch_id)).scalar()
        conn.rollback()
    return outcome == "stopping"


def start_trial_runs(db: Engine, rows: list[dict[str, Any]]) -> list[int]:
    """Insert one run row per trial (one transaction); returns their ids, in order."""
    ids = []
    with db.begin() as conn:
        for values in rows:
            result = conn.execute(trial_runs.insert().values(started_at=now(), outcome="running", epochs_run=0, **values))
            ids.append(int(result.inserted_primary_key[0]))
    return ids


def end_trial_runs(db: Engine, rows: list[dict[str, Any]]) -> None:
    """Close run rows (each a dict with its run_id and the final values), one transaction."""
    if not rows:
        return
    ended = now()
    with db.begin() as conn:
        for values in rows:
            values = dict(values)
            run_id = values.pop("run_id")
            conn.execute(trial_runs.update().where(trial_runs.c.run_id == run_id).values(ended_at=ended, **values))


def open_runs(db: Engine, launch_id: int) -> list[int]:
    """Trial ids whose run under this launch never ended."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(trial_runs.c.trial_id).where(trial_runs.c.launch_id == launch_id, trial_runs.c.outcome == "running")
        ).all()
        conn.rollback()
    return [row.trial_id for row in rows]


def mark_lost(db: Engine, trial_ids: list[int], reason: str) -> None:
    """Close the still-open run rows of trials whose worker vanished."""
    if not trial_ids:
        return
    with db.begin() as conn:
        conn.execute(
            trial_runs.update()
            .where(trial_runs.c.trial_id.in_(trial_ids), trial_runs.c.outcome == "running")
            .values(outcome="lost", ended_at=now(), error=reason)
        )
