"""The webhook outbox: the events a change causes, written in the change's transaction.

Placeholder seam; the webhooks work fills it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from openjules.store.sessions import SessionRecord
    from openjules.store.transitions import TransitionResult


async def record_transition(
    conn: AsyncConnection, *, owner_id: int, session_id: str, result: TransitionResult
) -> None:
    """Events of a state transition: state_changed/completed/failed and activity.created."""


async def record_created(conn: AsyncConnection, *, session: SessionRecord) -> None:
    """session.created."""
