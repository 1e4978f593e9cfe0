"""What a run of the agent needs to know about its session, read in one place."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import State
from openjules.store import agent_state, sessions, sources, tables
from openjules.store.agent_state import Checkpoint, Transcript
from openjules.store.sessions import SessionRecord
from openjules.store.sources import SourceRecord


@dataclass(frozen=True)
class RunFacts:
    session: SessionRecord
    source: SourceRecord | None  # None: a repoless session
    plan_approved: bool
    transcript: Transcript | None  # None: the run starts the conversation
    checkpoint: Checkpoint | None  # None: the workspace is the base commit

    @property
    def branch(self) -> str:
        return self.session.starting_branch or ""


async def load(conn: AsyncConnection, *, session_id: str) -> RunFacts | None:
    """None when the session does not exist (deleted)."""
    session = await sessions.find(conn, session_id=session_id)
    if session is None:
        return None
    source = await sources.get(conn, name=session.source_name) if session.source_name else None
    return RunFacts(
        session=session,
        source=source,
        plan_approved=await _plan_approved(conn, session_id=session_id),
        transcript=await agent_state.load_transcript(conn, session_id=session_id),
        checkpoint=await agent_state.load_checkpoint(conn, session_id=session_id),
    )


async def state_of(conn: AsyncConnection, *, session_id: str) -> State | None:
    value = (
        await conn.execute(
            select(tables.sessions.c.state).where(tables.sessions.c.id == session_id)
        )
    ).scalar()
    return State(value) if value else None


async def _plan_approved(conn: AsyncConnection, *, session_id: str) -> bool:
    p = tables.plans.c
    found = await conn.execute(
        select(p.id).where(p.session_id == session_id, p.approve_time.is_not(None)).limit(1)
    )
    return found.first() is not None
