"""The session state machine: one table governs every state change.

Each transition locks the session row, checks the table, updates state and times, appends
its activities and (where the table says so) enqueues a job, all in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import FailedPrecondition, NotFound
from openjules._types import SessionOutput, State
from openjules.store import activities, jobs, tables
from openjules.store.activities import MIN_ACTIVITY_GAP_US, ActivityRecord, NewActivity
from openjules.store.clock import now_us


class Event(StrEnum):
    START_PLANNING = "start_planning"
    START_WORK = "start_work"
    PLAN_AWAITS_APPROVAL = "plan_awaits_approval"
    PLAN_AUTO_APPROVED = "plan_auto_approved"
    PLAN_APPROVED = "plan_approved"
    AGENT_ASKED = "agent_asked"
    AGENT_MESSAGED = "agent_messaged"
    PROGRESS = "progress"
    USER_MESSAGED = "user_messaged"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Rule:
    to: State | None  # None: the state does not change
    enqueue: bool = False


S = State
_ACTIVE = (S.QUEUED, S.PLANNING, S.IN_PROGRESS, S.AWAITING_PLAN_APPROVAL, S.AWAITING_USER_FEEDBACK)

# event -> {from state -> rule}. A (event, state) pair not listed is illegal.
TRANSITIONS: dict[Event, dict[State, Rule]] = {
    Event.START_PLANNING: {S.QUEUED: Rule(S.PLANNING)},
    Event.START_WORK: {S.QUEUED: Rule(S.IN_PROGRESS), S.IN_PROGRESS: Rule(None)},
    Event.PLAN_AWAITS_APPROVAL: {S.PLANNING: Rule(S.AWAITING_PLAN_APPROVAL)},
    Event.PLAN_AUTO_APPROVED: {S.PLANNING: Rule(S.IN_PROGRESS)},
    Event.PLAN_APPROVED: {S.AWAITING_PLAN_APPROVAL: Rule(S.IN_PROGRESS, enqueue=True)},
    Event.AGENT_ASKED: {
        S.PLANNING: Rule(S.AWAITING_USER_FEEDBACK),
        S.IN_PROGRESS: Rule(S.AWAITING_USER_FEEDBACK),
    },
    Event.AGENT_MESSAGED: {S.PLANNING: Rule(None), S.IN_PROGRESS: Rule(None)},
    Event.PROGRESS: {S.PLANNING: Rule(None), S.IN_PROGRESS: Rule(None)},
    # A message reaches a running agent before its next model call; a session that waits
    # for a person (or has ended) is woken and goes back to the queue.
    Event.USER_MESSAGED: {
        S.QUEUED: Rule(None),
        S.PLANNING: Rule(None),
        S.IN_PROGRESS: Rule(None),
        S.AWAITING_PLAN_APPROVAL: Rule(S.QUEUED, enqueue=True),
        S.AWAITING_USER_FEEDBACK: Rule(S.QUEUED, enqueue=True),
        S.COMPLETED: Rule(S.QUEUED, enqueue=True),
        S.FAILED: Rule(S.QUEUED, enqueue=True),
    },
    Event.COMPLETED: {S.IN_PROGRESS: Rule(S.COMPLETED)},
    Event.FAILED: {state: Rule(S.FAILED) for state in _ACTIVE},
}

_PRECONDITION_MESSAGES: dict[Event, str] = {
    Event.PLAN_APPROVED: "The session has no plan awaiting approval (state is {state}).",
}


@dataclass(frozen=True)
class TransitionResult:
    previous: State
    state: State
    activities: list[ActivityRecord]


async def apply(
    conn: AsyncConnection,
    *,
    session_id: str,
    event: Event,
    new_activities: Sequence[NewActivity] = (),
    outputs: Sequence[SessionOutput] | None = None,
    owner_id: int | None = None,
) -> TransitionResult:
    """Apply ``event`` to the session; raise FAILED_PRECONDITION if the table forbids it."""
    query = (
        select(tables.sessions.c.state, tables.sessions.c.last_activity_time)
        .where(tables.sessions.c.id == session_id)
        .with_for_update()
    )
    if owner_id is not None:
        query = query.where(tables.sessions.c.owner_id == owner_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound()
    previous = State(row.state)
    rule = TRANSITIONS[event].get(previous)
    if rule is None:
        template = _PRECONDITION_MESSAGES.get(
            event, "Cannot apply {event} to a session in state {state}."
        )
        raise FailedPrecondition(template.format(event=event.value, state=previous.value))
    state = rule.to or previous

    now = now_us()
    at = row.last_activity_time
    written: list[ActivityRecord] = []
    for activity in new_activities:
        at = max(now, at + MIN_ACTIVITY_GAP_US)
        written.append(
            await activities.append(conn, session_id=session_id, activity=activity, at=at)
        )
    values: dict[str, object] = {"state": state.value, "update_time": max(now, at)}
    if written:
        values["last_activity_time"] = at
    if outputs is not None:
        values["outputs"] = json.dumps([o.to_wire() for o in outputs], separators=(",", ":"))
    await conn.execute(
        update(tables.sessions).where(tables.sessions.c.id == session_id).values(**values)
    )
    if rule.enqueue:
        await jobs.enqueue(conn, session_id=session_id)
    return TransitionResult(previous=previous, state=state, activities=written)
