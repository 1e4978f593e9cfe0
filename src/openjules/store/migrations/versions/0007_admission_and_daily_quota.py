"""admission: sessions.admit_time and its partial index; sessions created per user per day

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# tables.LIVE_ADMITTED_SQL as of this revision (a migration never imports the models).
LIVE_ADMITTED_SQL = "admit_time IS NOT NULL AND state NOT IN ('COMPLETED', 'FAILED')"


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admit_time", sa.BigInteger(), nullable=True))
    # Sessions that already started were admitted (when exactly no longer matters): they
    # count against their owner's limit once one is set.
    op.execute("UPDATE sessions SET admit_time = create_time WHERE state <> 'QUEUED'")
    op.create_index(
        "ix_sessions_live_admitted",
        "sessions",
        ["owner_id"],
        postgresql_where=sa.text(LIVE_ADMITTED_SQL),
        sqlite_where=sa.text(LIVE_ADMITTED_SQL),
    )
    op.create_table(
        "user_session_days",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_session_days_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_user_session_days")),
    )


def downgrade() -> None:
    op.drop_table("user_session_days")
    op.drop_index("ix_sessions_live_admitted", table_name="sessions")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("admit_time")
