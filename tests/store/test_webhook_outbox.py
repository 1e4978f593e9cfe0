"""The webhook outbox on a real database (SQLite and PostgreSQL): an event exists exactly
when its change committed, claims hand out each event once and a session's events one at
a time, and pruning keeps the tables bounded."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select, update

from openjules._types import CreateSessionRequest, CreateWebhookRequest, Originator, UserMessaged
from openjules.store import sessions, tables, transitions, users, webhook_outbox, webhooks
from openjules.store.activities import NewActivity
from openjules.store.clock import now_us
from openjules.store.database import Database
from openjules.store.transitions import Event
from openjules.store.webhook_outbox import ATTEMPTS_KEPT_PER_WEBHOOK, EventState, Outcome
from openjules.store.writer import ConnectionWriter


class Boom(Exception):
    pass


def _message(text: str) -> NewActivity:
    return NewActivity(kind=UserMessaged(user_message=text), originator=Originator.USER)


async def _owner_with_webhook(db: Database, name: str) -> tuple[int, str]:
    async with db.write() as conn:
        owner = (await users.get_or_create_user(conn, name=name)).id
        hook = await webhooks.create(
            conn,
            owner_id=owner,
            webhook=webhooks.validate(CreateWebhookRequest(url="https://example.com/h")),
        )
    return owner, hook.id


async def _events(db: Database, webhook_id: str) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(tables.webhook_events.c.event_type)
            .where(tables.webhook_events.c.webhook_id == webhook_id)
            .order_by(tables.webhook_events.c.id)
        )
        return [r.event_type for r in rows]


async def test_an_event_exists_exactly_when_its_change_committed(db: Database) -> None:
    owner, hook = await _owner_with_webhook(db, "committed")
    request = CreateSessionRequest(prompt="Rolled back")

    async def create_then_fail() -> None:
        async with db.write() as conn:
            await sessions.create(conn, owner_id=owner, request=request)
            raise Boom

    with pytest.raises(Boom):
        await create_then_fail()
    assert await _events(db, hook) == []
    async with db.write() as conn:
        await sessions.create(conn, owner_id=owner, request=CreateSessionRequest(prompt="Kept"))
    assert await _events(db, hook) == ["session.created"]


async def test_claims_hand_out_each_event_once_and_a_session_one_event_at_a_time(
    db: Database,
) -> None:
    owner, hook = await _owner_with_webhook(db, "claims")
    async with db.write() as conn:
        first = await sessions.create(
            conn, owner_id=owner, request=CreateSessionRequest(prompt="a")
        )
        second = await sessions.create(
            conn, owner_id=owner, request=CreateSessionRequest(prompt="b")
        )
        for record in (first, second):
            await transitions.apply(
                ConnectionWriter(conn),
                session_id=record.id,
                event=Event.USER_MESSAGED,
                new_activities=[_message("more")],
            )
        await webhook_outbox.record_test(conn, webhook_id=hook)

    async def claim(owner_name: str) -> list[webhook_outbox.DueEvent]:
        async with db.write() as conn:
            return await webhook_outbox.claim(
                conn, owner=owner_name, lease_us=60_000_000, limit=100
            )

    # Two senders at once: on PostgreSQL they skip each other's rows, on SQLite they take
    # turns; either way no event is handed out twice.
    a, b = await asyncio.gather(claim("a"), claim("b"))
    mine = [e for e in [*a, *b] if e.webhook_id == hook]
    assert len({e.id for e in mine}) == len(mine)
    # One event per session (the first), and the test event, which belongs to none.
    assert sorted((e.session_id or "", e.event_type) for e in mine) == sorted(
        [(first.id, "session.created"), (second.id, "session.created"), ("", "webhook.test")]
    )
    assert [e for e in await claim("c") if e.webhook_id == hook] == []

    # Once the first event of a session is delivered, its next one is due.
    (done,) = [e for e in mine if e.session_id == first.id]
    async with db.write() as conn:
        state = await webhook_outbox.finish_attempt(
            conn,
            event=done,
            owner="a" if done in a else "b",
            outcome=Outcome(status=204),
            retry_delays_us=[0],
        )
    assert state is EventState.DELIVERED
    assert [e.session_id for e in await claim("c") if e.webhook_id == hook] == [first.id]


async def test_prune_forgets_old_settled_events_and_keeps_the_newest_attempts(
    db: Database,
) -> None:
    owner, hook = await _owner_with_webhook(db, "prune")
    async with db.write() as conn:
        for prompt in ("old delivered", "old failed", "recent delivered", "pending"):
            await sessions.create(conn, owner_id=owner, request=CreateSessionRequest(prompt=prompt))
    e = tables.webhook_events.c
    long_ago = now_us() - 30 * 24 * 3600 * 1_000_000
    async with db.write() as conn:
        rows = (
            await conn.execute(select(e.id, e.payload).where(e.webhook_id == hook).order_by(e.id))
        ).all()
        by_prompt = {json.loads(r.payload)["data"]["session"]["prompt"]: r.id for r in rows}
        for prompt, state, created in (
            ("old delivered", EventState.DELIVERED, long_ago),
            ("old failed", EventState.FAILED, long_ago),
            ("recent delivered", EventState.DELIVERED, now_us()),
        ):
            await conn.execute(
                update(tables.webhook_events)
                .where(e.id == by_prompt[prompt])
                .values(state=state.value, create_time=created)
            )
        extra = 25
        await conn.execute(
            tables.webhook_attempts.insert(),
            [
                {
                    "webhook_id": hook,
                    "message_id": f"msg_{n}",
                    "event_type": "webhook.test",
                    "attempt": 1,
                    "status": 200,
                    "error": "",
                    "time": n,
                }
                for n in range(ATTEMPTS_KEPT_PER_WEBHOOK + extra)
            ],
        )
    async with db.write() as conn:
        deleted = await webhook_outbox.prune(conn)
    assert deleted >= 2 + extra
    async with db.read() as conn:
        left = (await conn.execute(select(e.id).where(e.webhook_id == hook))).scalars().all()
        a = tables.webhook_attempts.c
        kept = (
            (await conn.execute(select(a.message_id).where(a.webhook_id == hook).order_by(a.id)))
            .scalars()
            .all()
        )
    assert sorted(left) == sorted([by_prompt["recent delivered"], by_prompt["pending"]])
    assert kept == [f"msg_{n}" for n in range(extra, ATTEMPTS_KEPT_PER_WEBHOOK + extra)]
    assert (await _count_attempts(db, hook)) == ATTEMPTS_KEPT_PER_WEBHOOK


async def _count_attempts(db: Database, webhook_id: str) -> int:
    a = tables.webhook_attempts.c
    async with db.read() as conn:
        found = await conn.execute(select(func.count()).where(a.webhook_id == webhook_id))
        return int(found.scalar_one())
