"""hpsearch's own tables, next to Optuna's in the same database.

Optuna records what was sampled and what it scored; these record how each trial ran and what
each launch was, so "which GPU ran trial 12, how long did it take, from which study file?"
is one SQL query. The alembic history in the top-level `alembic/` folder creates them; this
module declares the same shape for queries and for the test that the two agree.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from optuna.trial import TrialState

metadata = sa.MetaData()


class ValueType(enum.Enum):
    """Optuna's trial value kinds, stored by name (a native enum on PostgreSQL)."""

    FINITE = 1
    INF_POS = 2
    INF_NEG = 3


def _attributes(name: str, owner: str) -> sa.Table:
    """One of Optuna's key/JSON-value attribute tables (of trials or of studies)."""
    return sa.Table(
        name,
        metadata,
        sa.Column(f"{name[:-1]}_id", sa.Integer, primary_key=True),
        sa.Column(owner, sa.Integer),
        sa.Column("key", sa.String(512)),
        sa.Column("value_json", sa.Text),
    )


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
    sa.Column("datetime_start", sa.DateTime),  # naive UTC, as Optuna 5 stores it
    sa.Column("datetime_complete", sa.DateTime),
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


optuna_user_attrs = _attributes("trial_user_attributes", "trial_id")
optuna_system_attrs = _attributes("trial_system_attributes", "trial_id")
optuna_study_system_attrs = _attributes("study_system_attributes", "study_id")
optuna_params = sa.Table(
    "trial_params",
    metadata,
    sa.Column("param_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("param_name", sa.String(512)),
    sa.Column("param_value", sa.Float(precision=53)),
    sa.Column("distribution_json", sa.Text),
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
    sa.Column("outcome", sa.String(32), nullable=False),  # running, stopping, finished, timeout, interrupted, failed, lost
    sa.Column("heartbeat_at", sa.DateTime, nullable=True),  # the launcher's last beat, by the database's clock
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


def db_now(conn: Any) -> dt.datetime:
    """The database's clock, naive: heartbeats carry it, so machines compare with one clock."""
    return conn.execute(sa.select(sa.func.now(type_=sa.DateTime))).scalar().replace(tzinfo=None)
