"""A heartbeat on each launch: a launch whose launcher died (kill -9) is seen as lost.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before stay NULL: such a launch, still marked running, is judged by its start.
    with op.batch_alter_table("hpsearch_launches") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hpsearch_launches") as batch:
        batch.drop_column("heartbeat_at")
