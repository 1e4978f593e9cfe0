"""The webhook outbox: the events a change causes, written in the change's transaction,
and the queue the sender (``engine.webhooks``) delivers them from.

Writing: each ``record_*`` looks up the owner's webhooks (one indexed query; none is the
usual answer and the end of it) and inserts one ``webhook_events`` row per (webhook that
wants it, event). An event thus exists exactly when its change committed. The row's
``payload`` is the delivery body as of the change (``{"type", "timestamp", "data"}``)
except the sessions' ``url``, which names the server and is filled in at delivery.

Delivering: ``claim`` leases due events like ``store.jobs`` leases jobs; an event is due
only when no earlier event of the same webhook and session is still pending, so the
events of a session reach each webhook in order. ``finish_attempt`` records the attempt
and either ends the event (delivered, or failed after the last retry) or schedules the
next try. A sender that dies leaves leases that expire; its events are claimed again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Insert,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from openjules._types import PullRequest, Session, WebhookEventType
from openjules.store import sessions, tables
from openjules.store.clock import format_timestamp, now_us
from openjules.store.session_wire import render_session, session_url
from openjules.store.writer import ConnectionWriter, Writer

if TYPE_CHECKING:
    from openjules.store.direct import DirectReads
    from openjules.store.sessions import SessionRecord
    from openjules.store.transitions import TransitionResult

E = WebhookEventType
_W = tables.webhooks.c
# Prebuilt: every transition of every session asks it, most often to find no webhook.
_HOOKS_OF = select(_W.id, _W.event_types).where(_W.owner_id == bindparam("owner_id"))
_V = tables.webhook_events.c
_A = tables.webhook_attempts.c
# Writer.memo key: the owner's webhooks, looked up once per transaction.
_HOOKS = "openjules_webhooks"
# Delivered events are kept this long (then only their attempts remain); failed ones
# longer, for whoever looks into why.
DELIVERED_KEPT_US = 3600 * 1_000_000
FAILED_KEPT_US = 7 * 24 * 3600 * 1_000_000
# The attempts a webhook's deliveries list shows at most (older ones are pruned).
ATTEMPTS_KEPT_PER_WEBHOOK = 1000


class EventState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class _Hook:
    id: str
    event_types: frozenset[str]  # empty: every type

    def wants(self, event_type: WebhookEventType) -> bool:
        return not self.event_types or event_type.value in self.event_types


@dataclass(frozen=True)
class _Event:
    type: WebhookEventType
    session_id: str | None
    data: dict[str, Any]


# --- writing events (in the transaction of the change) ---------------------------------


async def _hooks(writer: Writer, owner_id: int) -> list[_Hook]:
    """The owner's webhooks, looked up once per transaction (ix_webhooks_owner_list)."""
    key = (_HOOKS, owner_id)
    hooks: list[_Hook] | None = writer.memo.get(key)
    if hooks is None:
        found = await writer.rows("webhooks.of", lambda: _HOOKS_OF, {"owner_id": owner_id})
        hooks = [
            _Hook(id=hook_id, event_types=frozenset(json.loads(types))) for hook_id, types in found
        ]
        writer.memo[key] = hooks
    return hooks


def know_no_hooks(writer: Writer, *, owner_id: int) -> None:
    """The transaction on ``writer`` found that the owner has no webhook (a statement of
    its own asked), so its events need no look-up."""
    writer.memo[(_HOOKS, owner_id)] = []


def new_message_id() -> str:
    """A ``webhook-id``: unique per event, the same on each of its attempts."""
    return f"msg_{secrets.token_hex(16)}"


def _event_rows(hooks: Sequence[_Hook], events: Sequence[_Event]) -> list[dict[str, Any]]:
    now = now_us()
    return [
        {
            "webhook_id": hook.id,
            "message_id": new_message_id(),
            "event_type": event.type.value,
            "session_id": event.session_id,
            "payload": json.dumps(
                {"type": event.type.value, "timestamp": format_timestamp(now), "data": event.data},
                separators=(",", ":"),
                ensure_ascii=False,
            ),
            "state": EventState.PENDING.value,
            "attempts": 0,
            "next_attempt_time": now,
            "create_time": now,
        }
        # Event by event, so that ids (the delivery order) follow the order of events.
        for event in events
        for hook in hooks
        if hook.wants(event.type)
    ]


async def _write(writer: Writer, hooks: Sequence[_Hook], events: Sequence[_Event]) -> None:
    rows = _event_rows(hooks, events)
    if rows:
        await writer.run_many("webhook_events.insert", _events_insert, rows)


def _session_snapshot(record: SessionRecord) -> dict[str, Any]:
    """The Session as it is now, without its url (see ``delivery_body``)."""
    wire = render_session(record, base_url="").to_wire()
    wire.pop("url", None)
    return wire


async def record_created(writer: Writer, *, session: SessionRecord) -> None:
    """session.created (a create's one event)."""
    hooks = await _hooks(writer, session.owner_id)
    if hooks:
        event = _Event(E.SESSION_CREATED, session.id, {"session": _session_snapshot(session)})
        await _write(writer, hooks, [event])


def _events_insert() -> Insert:
    return tables.webhook_events.insert()


async def record_transition(
    writer: Writer, *, owner_id: int, session_id: str, result: TransitionResult
) -> None:
    """Events of a state transition: activity.created for each activity it wrote, then
    session.state_changed and session.completed/failed if the state changed."""
    hooks = await _hooks(writer, owner_id)
    if not hooks:
        return
    record = await sessions.find_on(writer, session_id=session_id)
    if record is None:
        return
    name = f"sessions/{session_id}"
    events = [
        _Event(
            E.ACTIVITY_CREATED,
            session_id,
            {"session": name, "activity": json.loads(a.render())},
        )
        for a in result.activities
    ]
    if result.state is not result.previous:
        snapshot = _session_snapshot(record)
        data = {"session": snapshot, "previousState": result.previous.value}
        events.append(_Event(E.SESSION_STATE_CHANGED, session_id, data))
        ended = {"COMPLETED": E.SESSION_COMPLETED, "FAILED": E.SESSION_FAILED}
        if result.state.value in ended:
            events.append(_Event(ended[result.state.value], session_id, {"session": snapshot}))
    await _write(writer, hooks, events)


async def record_pull_request(
    conn: AsyncConnection, *, session_id: str, pull_request: PullRequest
) -> None:
    """pull_request.opened: the session's pull request was recorded for the first time."""
    writer = ConnectionWriter(conn)
    record = await sessions.find_on(writer, session_id=session_id)
    if record is None:
        return
    hooks = await _hooks(writer, record.owner_id)
    if not hooks:
        return
    data = {"session": _session_snapshot(record), "pullRequest": pull_request.to_wire()}
    await _write(writer, hooks, [_Event(E.PULL_REQUEST_OPENED, session_id, data)])


async def record_test(conn: AsyncConnection, *, webhook_id: str) -> None:
    """webhook.test, for this webhook only (whatever event types it asked for)."""
    hook = _Hook(id=webhook_id, event_types=frozenset())
    data = {"webhook": f"webhooks/{webhook_id}"}
    await _write(ConnectionWriter(conn), [hook], [_Event(E.WEBHOOK_TEST, None, data)])


# --- delivering ----------------------------------------------------------------------


@dataclass(frozen=True)
class DueEvent:
    """A claimed event and what it takes to deliver it."""

    id: int
    webhook_id: str
    message_id: str
    event_type: str
    session_id: str | None
    payload: str
    attempts: int  # made before this one
    url: str
    secret: str

    def body(self, *, base_url: str) -> bytes:
        """The delivery body: the payload with the sessions' url filled in."""
        payload = json.loads(self.payload)
        session = payload.get("data", {}).get("session")
        if isinstance(session, dict) and session.get("id"):
            url = session_url(session["id"], base_url=base_url)
            payload["data"]["session"] = (
                Session.model_validate(session).model_copy(update={"url": url}).to_wire()
            )
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _first_pending_of_its_session() -> ColumnElement[bool]:
    """No earlier event of the same webhook and session is pending (ix_webhook_events_order).
    Events without a session (webhook.test) wait for nothing."""
    earlier = aliased(tables.webhook_events)
    return ~exists(
        select(earlier.c.id).where(
            earlier.c.webhook_id == _V.webhook_id,
            earlier.c.session_id == _V.session_id,
            earlier.c.state == EventState.PENDING.value,
            earlier.c.id < _V.id,
        )
    )


def _claimable(now: int | BindParameter[int]) -> ColumnElement[bool]:
    return and_(
        _V.state == EventState.PENDING.value,
        _V.next_attempt_time <= now,
        or_(_V.lease_expire_time.is_(None), _V.lease_expire_time < now),
        _first_pending_of_its_session(),
    )


async def look(reads: DirectReads) -> tuple[bool, int | None]:
    """Whether ``claim`` would find something and, if not, when the next event could be
    claimed (a retry coming due, a lease expiring; None: nothing pending). Reads only, so
    an idle sender does not take the write lock (on SQLite, one for the whole database) to
    find nothing; and on the hot path (``store.direct``: statements compiled once, no
    pooled SQLAlchemy connection), as the sender looks after every burst of changes."""
    due = await reads.tuples("webhook_events.any_due", _any_due, {"now": now_us()})
    if due:
        return True, None
    found = await reads.tuples("webhook_events.next_due", _next_due, {})
    value = found[0][0] if found else None
    return False, None if value is None else int(value)


def _any_due() -> Select[Any]:
    return select(_V.id).where(_claimable(bindparam("now", type_=BigInteger))).limit(1)


def _next_due() -> Select[Any]:
    return select(func.min(_due_time())).where(
        _V.state == EventState.PENDING.value, _first_pending_of_its_session()
    )


def _due_time() -> ColumnElement[int]:
    return case(
        (
            and_(_V.lease_expire_time.is_not(None), _V.lease_expire_time > _V.next_attempt_time),
            _V.lease_expire_time,
        ),
        else_=_V.next_attempt_time,
    )


async def claim(conn: AsyncConnection, *, owner: str, lease_us: int, limit: int) -> list[DueEvent]:
    """Lease up to ``limit`` due events, oldest first (at most one per webhook and
    session: a later one waits for the earlier). PostgreSQL skips rows other senders
    hold (``FOR UPDATE SKIP LOCKED``); SQLite serializes writers, so a plain select is safe."""
    now = now_us()
    candidates = select(_V.id).where(_claimable(now)).order_by(_V.id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = [row.id for row in await conn.execute(candidates)]
    if not ids:
        return []
    await conn.execute(
        update(tables.webhook_events)
        .where(_V.id.in_(ids))
        .values(lease_owner=owner, lease_expire_time=now + lease_us)
    )
    rows = await conn.execute(
        select(
            _V.id,
            _V.webhook_id,
            _V.message_id,
            _V.event_type,
            _V.session_id,
            _V.payload,
            _V.attempts,
            _W.url,
            _W.secret,
        )
        .join(tables.webhooks, _W.id == _V.webhook_id)
        .where(_V.id.in_(ids))
        .order_by(_V.id)
    )
    return [
        DueEvent(
            id=r.id,
            webhook_id=r.webhook_id,
            message_id=r.message_id,
            event_type=r.event_type,
            session_id=r.session_id,
            payload=r.payload,
            attempts=r.attempts,
            url=r.url,
            secret=r.secret,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the receiver's status (None: no answer) or an error."""

    status: int | None
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def finish_attempt(
    conn: AsyncConnection,
    *,
    event: DueEvent,
    owner: str,
    outcome: Outcome,
    retry_delays_us: Sequence[int],
) -> EventState | None:
    """Record the attempt and settle the event: delivered, retried after the next delay of
    the schedule, or failed after the last. None if the lease was lost meanwhile (another
    sender took the event over, or the webhook was deleted): nothing is recorded."""
    now = now_us()
    attempt = event.attempts + 1
    values: dict[str, object] = {
        "attempts": attempt,
        "lease_owner": None,
        "lease_expire_time": None,
    }
    if outcome.delivered:
        state = EventState.DELIVERED
    elif attempt > len(retry_delays_us):
        state = EventState.FAILED
    else:
        state = EventState.PENDING
        values["next_attempt_time"] = now + retry_delays_us[attempt - 1]
    settled = await conn.execute(
        update(tables.webhook_events)
        .where(_V.id == event.id, _V.lease_owner == owner, _V.state == EventState.PENDING.value)
        .values(state=state.value, **values)
    )
    if settled.rowcount != 1:
        return None
    await conn.execute(
        tables.webhook_attempts.insert().values(
            webhook_id=event.webhook_id,
            message_id=event.message_id,
            event_type=event.event_type,
            attempt=attempt,
            status=outcome.status,
            error=outcome.error,
            time=now,
        )
    )
    return state


async def release(conn: AsyncConnection, *, owner: str) -> None:
    """Give back the events ``owner`` holds (a sender stopping): claimable again at once."""
    await conn.execute(
        update(tables.webhook_events)
        .where(_V.lease_owner == owner, _V.state == EventState.PENDING.value)
        .values(lease_owner=None, lease_expire_time=None)
    )


async def prune(conn: AsyncConnection) -> int:
    """Forget settled events past their keeping time and each webhook's attempts beyond
    the newest ATTEMPTS_KEPT_PER_WEBHOOK; returns the number of rows deleted."""
    now = now_us()
    gone = await conn.execute(
        delete(tables.webhook_events).where(
            or_(
                and_(
                    _V.state == EventState.DELIVERED.value,
                    _V.create_time < now - DELIVERED_KEPT_US,
                ),
                and_(_V.state == EventState.FAILED.value, _V.create_time < now - FAILED_KEPT_US),
            )
        )
    )
    deleted = gone.rowcount
    crowded = await conn.execute(
        select(_A.webhook_id)
        .group_by(_A.webhook_id)
        .having(func.count() > ATTEMPTS_KEPT_PER_WEBHOOK)
    )
    for (webhook_id,) in crowded.all():
        oldest_kept = (
            select(_A.id)
            .where(_A.webhook_id == webhook_id)
            .order_by(_A.id.desc())
            .offset(ATTEMPTS_KEPT_PER_WEBHOOK - 1)
            .limit(1)
            .scalar_subquery()
        )
        trimmed = await conn.execute(
            delete(tables.webhook_attempts).where(_A.webhook_id == webhook_id, _A.id < oldest_kept)
        )
        deleted += trimmed.rowcount
    return deleted
