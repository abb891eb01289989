"""leased render tasks and finalisations; cancelled is a job state; person ids persisted as segments are joined

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 20:10:00

"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _leased_task_table(name: str, *columns: sa.Column[Any]) -> None:
    """The columns every leased task has (models.LeasedTask)."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("video_id", sa.String(length=32), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        *columns,
        sa.ForeignKeyConstraint(["video_id"], ["videos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("video_id", "index"),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{name}_video_id"), ["video_id"], unique=False)


def upgrade() -> None:
    _leased_task_table("render_tasks", sa.Column("seconds", sa.Float(), nullable=True))
    _leased_task_table("finalisations")
    # A cancel was a failed job with the cancel flag set; it is a state of its own now.
    op.execute("UPDATE videos SET status = 'cancelled', error = NULL WHERE cancel_requested AND status = 'failed'")
    # A job left running by the old workers is restarted by the new ones' sweep from the segments it has:
    # it gets the render tasks and finalisation `start` plans for it.
    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segments_joined", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("finalising")
        batch_op.drop_column("render_progress")


def downgrade() -> None:
    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("render_progress", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("finalising", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_column("segments_joined")
    op.execute("UPDATE videos SET status = 'failed', error = 'cancelled by the user', cancel_requested = TRUE WHERE status = 'cancelled'")
    for name in ("finalisations", "render_tasks"):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{name}_video_id"))
        op.drop_table(name)
