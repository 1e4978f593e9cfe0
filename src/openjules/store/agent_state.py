"""What the agent needs to resume a session: its transcript and its last checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import ACTIVITY_KIND_KEYS, UserMessaged
from openjules.store import tables
from openjules.store.clock import now_us
from openjules.store.direct import DirectReads
from openjules.store.upsert import upsert_on
from openjules.store.writer import Writer

USER_MESSAGED = ACTIVITY_KIND_KEYS[UserMessaged]


class Phase(StrEnum):
    """Which tools the agent has: read-only while it plans, all of them once it works."""

    PLANNING = "planning"
    WORK = "work"


@dataclass(frozen=True)
class Finishing:
    """The agent called ``finish``; completing the session (and delivering its changes)
    is still to do. Stored with the transcript, so a run that dies before completing
    completes on resume without asking the model again."""

    summary: str
    commit_message: str


@dataclass
class Transcript:
    messages: list[dict[str, Any]] = field(default_factory=list)
    phase: Phase = Phase.PLANNING
    last_user_message_time: int = 0
    finishing: Finishing | None = None


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
    finishing = json.loads(row.finishing) if row.finishing else None
    return Transcript(
        messages=json.loads(row.messages),
        phase=Phase(row.phase),
        last_user_message_time=row.last_user_message_time,
        finishing=Finishing(**finishing) if finishing else None,
    )


async def save_transcript(writer: Writer, *, session_id: str, transcript: Transcript) -> None:
    await upsert_on(
        writer,
        tables.transcripts,
        key=["session_id"],
        values={
            "session_id": session_id,
            "messages": json.dumps(transcript.messages, ensure_ascii=False),
            "phase": transcript.phase.value,
            "last_user_message_time": transcript.last_user_message_time,
            "finishing": _finishing_json(transcript.finishing),
            "update_time": now_us(),
        },
    )


def _finishing_json(finishing: Finishing | None) -> str | None:
    if finishing is None:
        return None
    return json.dumps(
        {"summary": finishing.summary, "commit_message": finishing.commit_message},
        ensure_ascii=False,
    )


async def load_checkpoint(conn: AsyncConnection, *, session_id: str) -> Checkpoint | None:
    row = (
        await conn.execute(
            select(tables.checkpoints).where(tables.checkpoints.c.session_id == session_id)
        )
    ).first()
    return None if row is None else Checkpoint(base_commit=row.base_commit, patch=row.patch)


async def save_checkpoint(writer: Writer, *, session_id: str, checkpoint: Checkpoint) -> None:
    await upsert_on(
        writer,
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
    reads: DirectReads, *, session_id: str, after_us: int
) -> list[tuple[int, str]]:
    """(createTime, text) of userMessaged activities newer than ``after_us``, oldest first
    (asked before every model call: a direct read)."""
    params = {"session_id": session_id, "after_us": after_us, "kind": USER_MESSAGED}
    rows = await reads.tuples("agent_state.user_messages", _user_messages_statement, params)
    return [(at, json.loads(body)[USER_MESSAGED]["userMessage"]) for at, body in rows]


def _user_messages_statement() -> Select[Any]:
    a = tables.activities.c
    return (
        select(a.create_time, a.body)
        .where(
            a.session_id == bindparam("session_id"),
            a.kind == bindparam("kind"),
            a.create_time > bindparam("after_us"),
        )
        .order_by(a.create_time)
    )
