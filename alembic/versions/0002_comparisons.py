"""Comparisons of optimizers (hpsearch compare).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpsearch_comparisons",
        sa.Column("comparison_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("study_file_sha256", sa.String(64), sa.ForeignKey("hpsearch_study_files.sha256"), nullable=True),
        sa.Column("budget", sa.Integer, nullable=False),
        sa.Column("seeds", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hpsearch_comparisons")
