"""Activities: append-only, per-session createTime strictly increasing and >= 1 ms apart.

Each row stores the activity's wire JSON minus ``name``, ``id`` and ``createTime`` so that a
page renders by string concatenation, without decoding and re-encoding every payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import and_, false, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from openjules._errors import NotFound
from openjules._types import ActivityKind, Artifact, Originator, activity_kind_key
from openjules.store import tables
from openjules.store.clock import format_timestamp, new_hex_id
from openjules.store.query import Condition, Filter, Op, filter_clause

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
        """The activity's wire JSON. Ids are digits and hex, so nothing here needs escaping."""
        return (
            f'{{"name":"sessions/{self.session_id}/activities/{self.id}","id":"{self.id}",'
            f'"createTime":"{format_timestamp(self.create_time)}",{self.body[1:]}'
        )


async def append(
    conn: AsyncConnection, *, session_id: str, activity: NewActivity, at: int
) -> ActivityRecord:
    """Insert at time ``at``; callers (the transition table) guarantee ordering and gaps."""
    record = ActivityRecord(
        session_id=session_id, id=new_hex_id(), create_time=at, body=activity.body_json()
    )
    await conn.execute(
        tables.activities.insert().values(
            id=record.id,
            session_id=session_id,
            create_time=at,
            kind=activity_kind_key(activity.kind),
            body=record.body,
        )
    )
    return record


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
    where = [
        tables.activities.c.session_id == session_id,
        filter_clause(flt, ACTIVITY_FILTER_COLUMNS),
    ]
    if after_ns is not None:
        where.append(_time_condition(Condition("create_time", Op.GE, str(after_ns))))
    rows = (
        await conn.execute(
            select(*ACTIVITY_COLUMNS)
            .where(and_(*where))
            .order_by(tables.activities.c.create_time)
            .limit(page_size + 1)
        )
    ).all()
    records = [
        ActivityRecord(session_id=session_id, id=r.id, create_time=r.create_time, body=r.body)
        for r in rows[:page_size]
    ]
    token = page_token_at(rows[page_size].create_time) if len(rows) > page_size else ""
    return records, token


def page_token_at(create_time: int) -> str:
    """The page token of a page starting at the item created at ``create_time`` (µs)."""
    return str(create_time * 1000)
