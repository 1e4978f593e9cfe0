"""Activities: append-only, per-session createTime strictly increasing and >= 1 ms apart.

Each row stores the activity's wire JSON minus ``name``, ``id`` and ``createTime`` so that a
page renders by string concatenation, without decoding and re-encoding every payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Insert,
    Select,
    bindparam,
    false,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from openjules._errors import NotFound
from openjules._types import ActivityKind, Artifact, Originator, activity_kind_key
from openjules.store import tables
from openjules.store.clock import new_hex_id
from openjules.store.direct import DirectReads
from openjules.store.query import Condition, Filter, Op, filter_clause
from openjules.store.session_wire import wire_timestamp
from openjules.store.writer import Writer

# The official SDK keeps a millisecond high-water mark: two activities in one millisecond
# make it yield the first again on every poll.
MIN_ACTIVITY_GAP_US = 1000
ACTIVITY_COLUMNS = (
    tables.activities.c.id,
    tables.activities.c.create_time,
    tables.activities.c.body,
)


@dataclass(frozen=True)
class NewActivity:
    """An activity to append: one kind (a ``_types`` activity class) plus its extras."""

    kind: ActivityKind
    originator: Originator
    artifacts: list[Artifact] = field(default_factory=list)
    description: str = ""

    def body_json(self) -> str:
        body: dict[str, object] = {}
        if self.description:
            body["description"] = self.description
        body["originator"] = self.originator.value
        body[activity_kind_key(self.kind)] = self.kind.to_wire()
        if self.artifacts:
            body["artifacts"] = [a.to_wire() for a in self.artifacts]
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ActivityRecord:
    session_id: str
    id: str
    create_time: int
    body: str

    def render(self) -> str:
        return render(self.session_id, self.id, self.create_time, self.body)


def render(session_id: str, activity_id: str, create_time: int, body: str) -> str:
    """An activity's wire JSON. Ids are digits and hex, so nothing here needs escaping."""
    return (
        f'{{"name":"sessions/{session_id}/activities/{activity_id}","id":"{activity_id}",'
        f'"createTime":"{wire_timestamp(create_time)}",{body[1:]}'
    )


async def append(
    writer: Writer, *, session_id: str, activity: NewActivity, at: int
) -> ActivityRecord:
    """Insert at time ``at``; callers (the transition table) guarantee ordering and gaps."""
    record = ActivityRecord(
        session_id=session_id, id=new_hex_id(), create_time=at, body=activity.body_json()
    )
    row = {
        "id": record.id,
        "session_id": session_id,
        "create_time": at,
        "kind": activity_kind_key(activity.kind),
        "body": record.body,
    }
    await writer.run("activities.insert", _insert, row)
    return record


def _insert() -> Insert:
    return tables.activities.insert()


async def get(conn: AsyncConnection, *, session_id: str, activity_id: str) -> ActivityRecord:
    row = (
        await conn.execute(
            select(*ACTIVITY_COLUMNS).where(
                tables.activities.c.session_id == session_id,
                tables.activities.c.id == activity_id,
            )
        )
    ).first()
    if row is None:
        raise NotFound()
    return ActivityRecord(
        session_id=session_id, id=row.id, create_time=row.create_time, body=row.body
    )


def _time_condition(cond: Condition) -> ColumnElement[bool]:
    """``create_time OP <ns>`` on a microsecond column, exact at nanosecond precision."""
    column = tables.activities.c.create_time
    ns = int(cond.value)
    floor_us, remainder = divmod(ns, 1000)
    ceil_us = floor_us + (1 if remainder else 0)
    match cond.op:
        case Op.GT:
            return column > floor_us
        case Op.GE:
            return column >= ceil_us
        case Op.LT:
            return column < ceil_us
        case Op.LE:
            return column <= floor_us
        case Op.EQ:
            return column == floor_us if not remainder else false()
        case Op.NE:
            return column != floor_us if not remainder else true()


ACTIVITY_FILTER_COLUMNS = {"create_time": _time_condition}


def _list_statement(flt: Filter) -> Select[Any]:
    """Oldest first from ``after_us`` (a bindparam, like ``session_id`` and ``limit``)."""
    return (
        select(*ACTIVITY_COLUMNS)
        .where(
            tables.activities.c.session_id == bindparam("session_id"),
            tables.activities.c.create_time >= bindparam("after_us"),
            filter_clause(flt, ACTIVITY_FILTER_COLUMNS),
        )
        .order_by(tables.activities.c.create_time)
        .limit(bindparam("limit"))
    )


def _list_params(*, session_id: str, page_size: int, after_ns: int | None) -> dict[str, Any]:
    # The token's nanoseconds rounded up to the microsecond column: the page starts at the
    # first activity at or after it (create_time >= 0 when there is no token).
    after_us = 0 if after_ns is None else -(-after_ns // 1000)
    return {"session_id": session_id, "after_us": after_us, "limit": page_size + 1}


def _paged(rows: list[Any], *, session_id: str, page_size: int) -> tuple[list[ActivityRecord], str]:
    records = [
        ActivityRecord(
            session_id=session_id, id=r["id"], create_time=r["create_time"], body=r["body"]
        )
        for r in rows[:page_size]
    ]
    token = page_token_at(rows[page_size]["create_time"]) if len(rows) > page_size else ""
    return records, token


async def list_page(
    conn: AsyncConnection,
    *,
    session_id: str,
    flt: Filter,
    page_size: int,
    after_ns: int | None,
) -> tuple[list[ActivityRecord], str]:
    """Oldest first. The page token is the decimal nanosecond time of the next item.

    That is the format the official SDK parses (``pageTokenToDate``), and the keyset on
    ``(session_id, create_time)`` keeps page 50 as cheap as page 1.
    """
    params = _list_params(session_id=session_id, page_size=page_size, after_ns=after_ns)
    rows = (await conn.execute(_list_statement(flt), params)).mappings().all()
    return _paged(list(rows), session_id=session_id, page_size=page_size)


@dataclass(frozen=True)
class Page:
    """A page of activities as the API sends it: each item's wire JSON and createTime."""

    items: list[str]
    times: list[int]
    next_token: str


def _owned_list_statement(flt: Filter) -> CompoundSelect[Any]:
    """``_list_statement`` of a session only if ``owner_id`` owns it, in one statement:
    its activities, then a row of NULLs that says the session is there and ``owner_id``'s
    (no rows at all: not found). The page is a subquery of its own, so both databases
    read it in index order and stop at ``limit``; the owner check is evaluated once."""
    a, s = tables.activities.c, tables.sessions.c
    mine = (s.id == bindparam("session_id"), s.owner_id == bindparam("owner_id"))
    page = (
        select(*ACTIVITY_COLUMNS)
        .where(
            a.session_id == bindparam("session_id"),
            a.create_time >= bindparam("after_us"),
            filter_clause(flt, ACTIVITY_FILTER_COLUMNS),
            select(s.id).where(*mine).exists(),
        )
        .order_by(a.create_time)
        .limit(bindparam("limit"))
        .subquery()
    )
    marker = select(null(), null(), null()).select_from(tables.sessions).where(*mine)
    return union_all(select(page.c.id, page.c.create_time, page.c.body), marker)


async def owned_page(
    reads: DirectReads,
    *,
    owner_id: int,
    session_id: str,
    flt: Filter,
    page_size: int,
    after_ns: int | None,
) -> Page:
    """``list_page`` for the API's hot path (``store.direct``): NotFound unless ``owner_id``
    owns the session, rendered, in one round trip."""
    params = _list_params(session_id=session_id, page_size=page_size, after_ns=after_ns)
    params["owner_id"] = owner_id
    rows = await reads.tuples(
        ("activities.owned_list", flt), lambda: _owned_list_statement(flt), params
    )
    if not rows:
        raise NotFound()
    # SQL leaves the order of a UNION's rows open: drop the marker, keep createTime order.
    rows = sorted((r for r in rows if r[0] is not None), key=lambda r: r[1])
    shown = rows[:page_size]
    return Page(
        items=[render(session_id, r[0], r[1], r[2]) for r in shown],
        times=[r[1] for r in shown],
        next_token=page_token_at(rows[page_size][1]) if len(rows) > page_size else "",
    )


def page_token_at(create_time: int) -> str:
    """The page token of a page starting at the item created at ``create_time`` (µs)."""
    return str(create_time * 1000)
