"""observations keep the unsmoothed expression probabilities; segments keep the shot cuts they found

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: observations and segments of jobs analysed before this have none (results fall back to the
    # smoothed probabilities and to no cuts).
    with op.batch_alter_table("observations") as batch:
        batch.add_column(sa.Column("emotion_raw", sa.JSON(), nullable=True))
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("shot_cuts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("shot_cuts")
    with op.batch_alter_table("observations") as batch:
        batch.drop_column("emotion_raw")
