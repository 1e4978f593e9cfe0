"""The session state machine: one table governs every state change.

Each transition locks the session row, checks the table, updates state and times, appends
its activities, enqueues or withdraws its job where the table says so, announces the change
(``store.changes``) and records the webhook events it causes (``store.webhook_outbox``),
all in one transaction.
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
from openjules.store import activities, changes, jobs, tables, webhook_outbox
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
    # A person's verbs beyond Jules' own (extensions).
    CANCELLED = "cancelled"
    PAUSED = "paused"
    RESUMED = "resumed"


@dataclass(frozen=True)
class Rule:
    to: State | None  # None: the state does not change
    enqueue: bool = False
    # The session wants no more work: a job waiting to run is withdrawn (one being run is
    # left to its worker, which notices and lets go).
    withdraw: bool = False
    # Back to the state the session was paused in (``to`` is ignored).
    unpause: bool = False


S = State
_ACTIVE = (S.QUEUED, S.PLANNING, S.IN_PROGRESS, S.AWAITING_PLAN_APPROVAL, S.AWAITING_USER_FEEDBACK)
# The states in which the agent works (or is about to): the ones a pause applies to.
_WORKING = (S.QUEUED, S.PLANNING, S.IN_PROGRESS)

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
        # Kept for the model: it reads the message once the session is resumed.
        S.PAUSED: Rule(None),
    },
    Event.COMPLETED: {S.IN_PROGRESS: Rule(S.COMPLETED)},
    Event.FAILED: {state: Rule(S.FAILED) for state in _ACTIVE},
    Event.CANCELLED: {state: Rule(S.FAILED, withdraw=True) for state in (*_ACTIVE, S.PAUSED)},
    Event.PAUSED: {state: Rule(S.PAUSED, withdraw=True) for state in _WORKING},
    Event.RESUMED: {S.PAUSED: Rule(None, enqueue=True, unpause=True)},
}


def allowed(event: Event, state: State) -> bool:
    """Whether ``event`` may happen to a session in ``state`` (e.g. which buttons a page
    offers; ``apply`` is what enforces it)."""
    return state in TRANSITIONS[event]


_PRECONDITION_MESSAGES: dict[Event, str] = {
    Event.PLAN_APPROVED: "The session has no plan awaiting approval (state is {state}).",
    Event.CANCELLED: "The session has already ended (state is {state}); nothing to cancel.",
    Event.PAUSED: (
        "Only a session that is queued, planning or in progress can be paused (state is {state})."
    ),
    Event.RESUMED: "Only a paused session can be resumed (state is {state}).",
}


async def hold_working(conn: AsyncConnection, *, session_id: str) -> None:
    """The agent records a step only while its session wants the work: lock the session
    row for the step's transaction (a pause or cancel committing at the same moment waits
    for the step, or the step for it) and raise NotFound or FailedPrecondition once it was
    deleted, paused, cancelled or otherwise moved on, so nothing of the step is written."""
    s = tables.sessions.c
    found = await conn.execute(select(s.state).where(s.id == session_id).with_for_update())
    state = found.scalar()
    if state is None:
        raise NotFound()
    if State(state) not in jobs.RUNNABLE:
        raise FailedPrecondition(f"The session no longer runs (state is {state}).")


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
    s = tables.sessions.c
    query = (
        select(s.state, s.last_activity_time, s.owner_id, s.paused_from)
        .where(s.id == session_id)
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
    if rule.unpause:
        state = State(row.paused_from or State.QUEUED.value)

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
    # Remembered on the way into PAUSED (a message while paused leaves it), forgotten on
    # the way out.
    if state is S.PAUSED and previous is not S.PAUSED:
        values["paused_from"] = previous.value
    elif previous is S.PAUSED and state is not S.PAUSED:
        values["paused_from"] = None
    await conn.execute(update(tables.sessions).where(s.id == session_id).values(**values))
    if rule.enqueue:
        await jobs.enqueue(conn, session_id=session_id)
    if rule.withdraw:
        await jobs.withdraw(conn, session_id=session_id)
    result = TransitionResult(previous=previous, state=state, activities=written)
    await changes.announce(conn, owner_id=row.owner_id, session_id=session_id)
    await webhook_outbox.record_transition(
        conn, owner_id=row.owner_id, session_id=session_id, result=result
    )
    return result
