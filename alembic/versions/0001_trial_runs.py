"""Study files, launches and trial runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpsearch_study_files",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime, nullable=False),
    )
    op.create_table(
        "hpsearch_launches",
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
        sa.Column("devices", sa.Text, nullable=False),
        sa.Column("n_workers", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
    )
    op.create_table(
        "hpsearch_trial_runs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), nullable=False),
        sa.Column("launch_id", sa.Integer, sa.ForeignKey("hpsearch_launches.launch_id", ondelete="SET NULL"), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("device", sa.String(255), nullable=False),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("cohort_size", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("epochs_run", sa.Integer, nullable=False),
        sa.Column("train_seconds", sa.Float, nullable=True),
        sa.Column("peak_memory_bytes", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_hpsearch_trial_runs_trial_id", "hpsearch_trial_runs", ["trial_id"])


def downgrade() -> None:
    op.drop_index("ix_hpsearch_trial_runs_trial_id", "hpsearch_trial_runs")
    op.drop_table("hpsearch_trial_runs")
    op.drop_table("hpsearch_launches")
    op.drop_table("hpsearch_study_files")
