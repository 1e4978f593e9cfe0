"""Write transactions straight through the driver (``Database.transact``,
``store.direct_write``) on both backends: they write exactly what the same code writes
through SQLAlchemy, publish their changes only once committed (here and to other
processes), leave nothing behind when they fail, wait for another process's SQLite lock
without stopping the loop, and on PostgreSQL survive pooled connections that died."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from typing import Any

import psycopg
import pytest
from sqlalchemy import bindparam, delete, select

from openjules._errors import InvalidArgument
from openjules._types import (
    CreateSessionRequest,
    CreateWebhookRequest,
    Originator,
    ProgressUpdated,
)
from openjules.store import agent_state, plans, sessions, tables, transitions, users, webhooks
from openjules.store.activities import NewActivity
from openjules.store.agent_state import Checkpoint, Transcript
from openjules.store.changes import Change, Everything
from openjules.store.database import Database, DatabaseUnavailable
from openjules.store.plans import StepDraft
from openjules.store.sessions import SessionRecord
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter, Writer
from tests.store.other_process import end_postgres_connections, holding_sqlite_write_lock

REQUEST = CreateSessionRequest(prompt="Fix the flaky test\nand say why.")
# Columns that differ between any two creates (ids, times, random message ids).
VARYING = {
    "id",
    "session_id",
    "create_time",
    "update_time",
    "available_time",
    "next_attempt_time",
    "message_id",
    "last_activity_time",
    "approve_time",
}


async def _owner(db: Database, name: str, *, webhook: bool = False) -> int:
    async with db.write() as conn:
        owner = (await users.get_or_create_user(conn, name=name)).id
        if webhook:
            request = CreateWebhookRequest(url="https://example.com/hook")
            await webhooks.create(conn, owner_id=owner, webhook=webhooks.validate(request))
    return owner


async def _direct_create(db: Database, owner: int) -> SessionRecord:
    async def create(writer: Writer) -> SessionRecord:
        return await sessions.create_on(writer, owner_id=owner, request=REQUEST)

    return await db.transact(create)


async def _rows(db: Database, session_id: str) -> dict[str, list[dict[str, Any]]]:
    """What a create wrote, without the values that differ from one create to another."""
    found: dict[str, list[dict[str, Any]]] = {}
    async with db.read() as conn:
        for table in (tables.sessions, tables.jobs, tables.webhook_events):
            key = table.c.id if table is tables.sessions else table.c.session_id
            rows = (await conn.execute(select(table).where(key == session_id))).mappings()
            found[table.name] = [
                {k: v for k, v in row.items() if k not in VARYING and k != "payload"}
                | ({"payload": _payload(row["payload"])} if "payload" in row else {})
                for row in rows
            ]
    return found


def _payload(raw: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(raw)
    payload.pop("timestamp")
    session = payload["data"]["session"]
    for key in ("id", "name", "createTime", "updateTime"):
        session.pop(key)
    return payload


async def test_a_direct_create_writes_what_the_sqlalchemy_create_writes(db: Database) -> None:
    owner = await _owner(db, "same-rows", webhook=True)
    direct = await _direct_create(db, owner)
    async with db.write() as conn:
        through = await sessions.create(conn, owner_id=owner, request=REQUEST)
    written = await _rows(db, direct.id)
    assert written == await _rows(db, through.id)
    assert [len(written[t]) for t in ("sessions", "jobs", "webhook_events")] == [1, 1, 1]
    assert written["sessions"][0]["state"] == "QUEUED"
    assert written["webhook_events"][0]["event_type"] == "session.created"


# What a step of the agent writes, and then a person's pause and resume (a job withdrawn
# and enqueued again), as the journal and the API's verbs run it.
STEP_TRANSCRIPT = Transcript(messages=[{"role": "user", "content": "Fix it"}])


async def _session_life(writer: Writer, session_id: str) -> None:
    await transitions.apply(writer, session_id=session_id, event=Event.START_PLANNING)
    await transitions.hold_working(writer, session_id=session_id)
    await plans.propose(
        writer, session_id=session_id, steps=[StepDraft(title="Look")], require_approval=False
    )
    progress = NewActivity(kind=ProgressUpdated(title="Ran the tests"), originator=Originator.AGENT)
    await transitions.apply(
        writer, session_id=session_id, event=Event.PROGRESS, new_activities=[progress]
    )
    checkpoint = Checkpoint(base_commit="abc", patch="diff")
    await agent_state.save_checkpoint(writer, session_id=session_id, checkpoint=checkpoint)
    for _ in range(2):  # the second one updates the row the first inserted
        await agent_state.save_transcript(writer, session_id=session_id, transcript=STEP_TRANSCRIPT)
    await transitions.apply(writer, session_id=session_id, event=Event.PAUSED)
    await transitions.apply(writer, session_id=session_id, event=Event.RESUMED)


# What differs between two sessions' lives: ids, times and webhook message ids.
_VARYING_TEXT = re.compile(
    r"[0-9a-f]{32}|\d{4}-\d\d-\d\dT[\d:.]+Z|sessions/\d+|\"id\":\"\d+\"|msg_[0-9a-f]+"
)


async def _life_rows(db: Database, session_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the session's, ids and times left out."""
    found: dict[str, list[dict[str, Any]]] = {}
    async with db.read() as conn:
        for table in (
            tables.sessions,
            tables.jobs,
            tables.activities,
            tables.plans,
            tables.transcripts,
            tables.checkpoints,
            tables.webhook_events,
        ):
            key = table.c.id if table is tables.sessions else table.c.session_id
            order = table.c.get("create_time", key)
            statement = select(table).where(key == session_id).order_by(order, *table.primary_key)
            found[table.name] = [
                {
                    k: _VARYING_TEXT.sub("*", v) if isinstance(v, str) else v
                    for k, v in row.items()
                    if k not in VARYING
                }
                for row in (await conn.execute(statement)).mappings()
            ]
    return found


async def test_a_direct_transition_writes_what_the_sqlalchemy_transition_writes(
    db: Database,
) -> None:
    owner = await _owner(db, "same-transitions", webhook=True)
    direct, through = await _direct_create(db, owner), await _direct_create(db, owner)
    await db.transact(lambda writer: _session_life(writer, direct.id))
    async with db.write() as conn:
        await _session_life(ConnectionWriter(conn), through.id)
    written = await _life_rows(db, direct.id)
    assert written == await _life_rows(db, through.id)
    assert written["sessions"][0]["state"] == "IN_PROGRESS"
    assert written["jobs"][0]["state"] == "ready"
    assert [_kind(a["body"]) for a in written["activities"]] == [
        "planGenerated",
        "planApproved",
        "progressUpdated",
    ]
    assert written["transcripts"][0]["messages"] == json.dumps(STEP_TRANSCRIPT.messages)
    # The owner's webhook heard every change: created, 3 activities, 4 state changes.
    assert len(written["webhook_events"]) == 1 + 3 + 4


def _kind(body: str) -> str:
    keys: list[str] = list(json.loads(body))
    return next(k for k in keys if k not in ("originator", "description"))


async def test_changes_are_published_after_the_commit_and_never_for_a_rollback(
    db: Database,
) -> None:
    owner = await _owner(db, "published")
    heard: list[Change | Everything] = []
    db.changes.subscribe(heard.append)

    async def create_then_fail(writer: Writer) -> None:
        await sessions.create_on(writer, owner_id=owner, request=REQUEST)
        assert heard == []  # announced, not published: nothing has committed
        raise InvalidArgument("changed my mind")

    with pytest.raises(InvalidArgument):
        await db.transact(create_then_fail)
    assert heard == []
    async with db.read() as conn:
        left = (
            await conn.execute(
                select(tables.sessions.c.id).where(tables.sessions.c.owner_id == owner)
            )
        ).all()
    assert left == []  # rolled back: no session, so no job either

    record = await _direct_create(db, owner)
    assert heard == [Change(owner_id=owner, session_id=record.id)]
    assert (await sessions.read(db.reads, owner_id=owner, session_id=record.id)).prompt == (
        REQUEST.prompt
    )


async def test_a_statement_that_fails_rolls_back_and_the_next_transaction_works(
    db: Database,
) -> None:
    owner = await _owner(db, "integrity")
    first = await _direct_create(db, owner)

    async def insert_twice(writer: Writer) -> None:
        # The job of a session that already has one: the primary key refuses it.
        await writer.run(
            "test.jobs.insert",
            lambda: tables.jobs.insert(),
            {
                "session_id": first.id,
                "state": "ready",
                "attempts": 0,
                "generation": 1,
                "available_time": 0,
                "create_time": 0,
            },
        )
        await writer.announce(owner_id=owner, session_id=first.id)
        await writer.rows("test.select", lambda: select(tables.jobs.c.state), {})

    # The driver's own error (not a 503): what SQLAlchemy would have wrapped.
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        await db.transact(insert_twice)
    second = await _direct_create(db, owner)  # the connection is usable again
    assert second.id != first.id


async def test_an_insert_without_a_column_gets_its_default_as_through_sqlalchemy(
    db: Database,
) -> None:
    owner = await _owner(db, "defaults")
    record = await _direct_create(db, owner)
    jobs = tables.jobs

    async def requeue(writer: Writer) -> None:
        await writer.run(
            "test.jobs.delete",
            lambda: delete(jobs).where(jobs.c.session_id == bindparam("sid")),
            {"sid": record.id},
        )
        # attempts and generation left out: their column defaults (0 and 1) apply.
        await writer.run(
            "test.jobs.minimal",
            lambda: jobs.insert(),
            {"session_id": record.id, "state": "ready", "available_time": 1, "create_time": 1},
        )

    await db.transact(requeue)
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(jobs.c.attempts, jobs.c.generation).where(jobs.c.session_id == record.id)
            )
        ).one()
    assert tuple(row) == (0, 1)


async def test_another_process_hears_of_a_direct_create(url: str) -> None:
    writer, listener = Database(url), Database(url, change_poll_seconds=0.05)
    try:
        owner = await _owner(writer, "elsewhere")
        heard: asyncio.Queue[Change | Everything] = asyncio.Queue()
        listener.changes.subscribe(heard.put_nowait)
        await listener.changes.start()
        await asyncio.wait_for(listener.changes.watching.wait(), 10.0)
        record = await _direct_create(writer, owner)
        while True:
            change = await asyncio.wait_for(heard.get(), 10.0)
            if isinstance(change, Change) and change.session_id == record.id:
                break
    finally:
        await listener.dispose()
        await writer.dispose()


async def test_a_direct_sqlite_write_waits_for_another_writer_without_stopping_the_loop(
    url: str, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's file lock")
    db = Database(url, busy_timeout_seconds=10.0)
    try:
        owner = await _owner(db, "waits")
        async with holding_sqlite_write_lock(url):
            write = asyncio.create_task(_direct_create(db, owner))
            for _ in range(5):
                await asyncio.sleep(0.05)  # the loop goes on meanwhile
            assert not write.done()
        record = await asyncio.wait_for(write, 10.0)
        assert (await sessions.read(db.reads, owner_id=owner, session_id=record.id)).id == (
            record.id
        )
    finally:
        await db.dispose()


async def test_a_direct_sqlite_write_locked_out_past_the_busy_timeout_is_unavailable(
    url: str, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's file lock")
    db = Database(url, busy_timeout_seconds=0.2)
    try:
        owner = await _owner(db, "locked-out")
        async with holding_sqlite_write_lock(url):
            with pytest.raises(DatabaseUnavailable):
                await _direct_create(db, owner)
        await _direct_create(db, owner)  # and the lock once free is taken again
    finally:
        await db.dispose()


async def test_dead_pooled_postgres_connections_cost_the_next_write_nothing(
    db: Database, backend: str, postgres_admin: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's server-side connections")
    owner = await _owner(db, "dead-writes")
    await asyncio.gather(*(_direct_create(db, owner) for _ in range(3)))  # pools some
    end_postgres_connections(postgres_admin=postgres_admin, database_url=db.url)
    await asyncio.sleep(0.2)  # the server has hung up on them
    record = await _direct_create(db, owner)
    assert (await sessions.read(db.reads, owner_id=owner, session_id=record.id)).id == record.id
