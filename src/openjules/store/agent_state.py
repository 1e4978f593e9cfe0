"""What the agent needs to resume a session: its transcript and its last checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.store import tables
from openjules.store.clock import now_us
from openjules.store.upsert import upsert


@dataclass
class Transcript:
    messages: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "planning"
    last_user_message_time: int = 0


@dataclass(frozen=True)
class Checkpoint:
    base_commit: str
    patch: str


async def load_transcript(conn: AsyncConnection, *, session_id: str) -> Transcript | None:
    row = (
        await conn.execute(
            select(tables.transcripts).where(tables.transcripts.c.session_id == session_id)
        )
    ).first()
    if row is None:
        return None
    return Transcript(
        messages=json.loads(row.messages),
        phase=row.phase,
        last_user_message_time=row.last_user_message_time,
    )


async def save_transcript(
    conn: AsyncConnection, *, session_id: str, transcript: Transcript
) -> None:
    await upsert(
        conn,
        tables.transcripts,
        key=["session_id"],
        values={
            "session_id": session_id,
            "messages": json.dumps(transcript.messages, ensure_ascii=False),
            "phase": transcript.phase,
            "last_user_message_time": transcript.last_user_message_time,
            "update_time": now_us(),
        },
    )


async def load_checkpoint(conn: AsyncConnection, *, session_id: str) -> Checkpoint | None:
    row = (
        await conn.execute(
            select(tables.checkpoints).where(tables.checkpoints.c.session_id == session_id)
        )
    ).first()
    return None if row is None else Checkpoint(base_commit=row.base_commit, patch=row.patch)


async def save_checkpoint(
    conn: AsyncConnection, *, session_id: str, checkpoint: Checkpoint
) -> None:
    await upsert(
        conn,
        tables.checkpoints,
        key=["session_id"],
        values={
            "session_id": session_id,
            "base_commit": checkpoint.base_commit,
            "patch": checkpoint.patch,
            "update_time": now_us(),
        },
    )


async def user_messages_after(
    conn: AsyncConnection, *, session_id: str, after_us: int
) -> list[tuple[int, str]]:
    """(createTime, text) of userMessaged activities newer than ``after_us``, oldest first."""
    rows = (
        await conn.execute(
            select(tables.activities.c.create_time, tables.activities.c.body)
            .where(
                tables.activities.c.session_id == session_id,
                tables.activities.c.kind == "userMessaged",
                tables.activities.c.create_time > after_us,
            )
            .order_by(tables.activities.c.create_time)
        )
    ).all()
    return [(r.create_time, json.loads(r.body)["userMessaged"]["userMessage"]) for r in rows]
