"""finishing (a staged finish in the transcript); deliveries renamed pull_request_deliveries

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 20:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = "session_id, branch, pending_commit, pushed_commit, pull_request, update_time"


def _deliveries_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("session_id", sa.String(length=20), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("pending_commit", sa.String(length=64), nullable=True),
        sa.Column("pushed_commit", sa.String(length=64), nullable=True),
        sa.Column("pull_request", sa.Text(), nullable=True),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f(f"fk_{name}_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f(f"pk_{name}")),
    )


def _move(old: str, new: str) -> None:
    """Copy rather than rename, so constraint names follow the table's (both backends)."""
    _deliveries_table(new)
    op.execute(f"INSERT INTO {new} ({COLUMNS}) SELECT {COLUMNS} FROM {old}")
    op.drop_table(old)


def upgrade() -> None:
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finishing", sa.Text(), nullable=True))
    # Webhook deliveries come next: say which deliveries these are.
    _move("deliveries", "pull_request_deliveries")


def downgrade() -> None:
    _move("pull_request_deliveries", "deliveries")
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.drop_column("finishing")
