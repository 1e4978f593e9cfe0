"""Pull-request deliveries: where a session's changes were pushed and which pull request
shows them (``automationMode: AUTO_CREATE_PR``).

One row per session. It is written before and after each push, so a worker that crashes
mid-delivery (or a follow-up run of the same session) knows what the remote branch may
hold and builds on it instead of opening a second pull request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import PullRequest
from openjules.store import changes, tables, webhook_outbox
from openjules.store.clock import now_us
from openjules.store.upsert import upsert_on
from openjules.store.writer import ConnectionWriter


@dataclass(frozen=True)
class DeliveryRecord:
    branch: str
    pending_commit: str | None = None
    pushed_commit: str | None = None
    pull_request: PullRequest | None = None


async def load(conn: AsyncConnection, *, session_id: str) -> DeliveryRecord | None:
    row = (
        await conn.execute(
            select(tables.pull_request_deliveries).where(
                tables.pull_request_deliveries.c.session_id == session_id
            )
        )
    ).first()
    if row is None:
        return None
    return DeliveryRecord(
        branch=row.branch,
        pending_commit=row.pending_commit,
        pushed_commit=row.pushed_commit,
        pull_request=(
            PullRequest.model_validate(json.loads(row.pull_request)) if row.pull_request else None
        ),
    )


async def save(conn: AsyncConnection, *, session_id: str, record: DeliveryRecord) -> None:
    """Store ``record``; once something is pushed, the session names its working branch."""
    before = await load(conn, session_id=session_id) if record.pull_request else None
    await upsert_on(
        ConnectionWriter(conn),
        tables.pull_request_deliveries,
        key=["session_id"],
        values={
            "session_id": session_id,
            "branch": record.branch,
            "pending_commit": record.pending_commit,
            "pushed_commit": record.pushed_commit,
            "pull_request": (
                json.dumps(record.pull_request.to_wire()) if record.pull_request else None
            ),
            "update_time": now_us(),
        },
    )
    if record.pushed_commit is not None:
        owner_id = (
            await conn.execute(
                update(tables.sessions)
                .where(
                    tables.sessions.c.id == session_id,
                    tables.sessions.c.working_branch.is_distinct_from(record.branch),
                )
                .values(working_branch=record.branch, update_time=now_us())
                .returning(tables.sessions.c.owner_id)
            )
        ).scalar()
        if owner_id is not None:  # the session's sourceContext changed: tell its watchers
            await changes.announce(conn, owner_id=owner_id, session_id=session_id)
    if record.pull_request and (before is None or before.pull_request is None):
        await webhook_outbox.record_pull_request(
            conn, session_id=session_id, pull_request=record.pull_request
        )
