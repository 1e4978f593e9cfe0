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
from typing import Any

from sqlalchemy import Select, Update, bindparam, select, update

from openjules._errors import FailedPrecondition, NotFound
from openjules._types import SessionOutput, State
from openjules.store import activities, jobs, tables, webhook_outbox
from openjules.store.activities import MIN_ACTIVITY_GAP_US, ActivityRecord, NewActivity
from openjules.store.clock import now_us
from openjules.store.writer import Writer


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


# Writer.memo key of the session row a transaction locked.
_LOCKED = "openjules_locked_session"


@dataclass
class _Locked:
    """The session row as this transaction locked it, kept current by ``apply``, the only
    writer of these columns (a statement of its own that changed them would leave it stale)."""

    state: State
    last_activity_time: int
    owner_id: int
    paused_from: str | None


def _lock_statement() -> Select[Any]:
    s, w = tables.sessions.c, tables.webhooks.c
    # Whether the owner has any webhook rides along, so the common case (none) costs the
    # transition no look-up of its own (``webhook_outbox.record_transition``).
    hooked = select(w.id).where(w.owner_id == s.owner_id).exists()
    return (
        select(s.state, s.last_activity_time, s.owner_id, s.paused_from, hooked)
        .where(s.id == bindparam("session_id"))
        .with_for_update()
    )


def _update_statement() -> Update:
    s = tables.sessions.c
    return update(tables.sessions).where(s.id == bindparam("session_id"))


async def _lock(writer: Writer, *, session_id: str) -> _Locked:
    """Lock the session row for the transaction, once however often it is asked for;
    NotFound if there is none."""
    key = (_LOCKED, session_id)
    locked: _Locked | None = writer.memo.get(key)
    if locked is not None:
        return locked
    rows = await writer.rows("sessions.lock", _lock_statement, {"session_id": session_id})
    if not rows:
        raise NotFound()
    state, last_activity_time, owner_id, paused_from, hooked = rows[0]
    locked = _Locked(State(state), last_activity_time, owner_id, paused_from)
    writer.memo[key] = locked
    if not hooked:
        webhook_outbox.know_no_hooks(writer, owner_id=owner_id)
    return locked


async def hold_working(writer: Writer, *, session_id: str) -> None:
    """The agent records a step only while its session wants the work: lock the session
    row for the step's transaction (a pause or cancel committing at the same moment waits
    for the step, or the step for it) and raise NotFound or FailedPrecondition once it was
    deleted, paused, cancelled or otherwise moved on, so nothing of the step is written."""
    locked = await _lock(writer, session_id=session_id)
    if locked.state not in jobs.RUNNABLE:
        raise FailedPrecondition(f"The session no longer runs (state is {locked.state}).")


@dataclass(frozen=True)
class TransitionResult:
    previous: State
    state: State
    activities: list[ActivityRecord]


async def apply(
    writer: Writer,
    *,
    session_id: str,
    event: Event,
    new_activities: Sequence[NewActivity] = (),
    outputs: Sequence[SessionOutput] | None = None,
    owner_id: int | None = None,
) -> TransitionResult:
    """Apply ``event`` to the session; raise FAILED_PRECONDITION if the table forbids it."""
    locked = await _lock(writer, session_id=session_id)
    if owner_id is not None and locked.owner_id != owner_id:
        raise NotFound()
    previous = locked.state
    rule = TRANSITIONS[event].get(previous)
    if rule is None:
        template = _PRECONDITION_MESSAGES.get(
            event, "Cannot apply {event} to a session in state {state}."
        )
        raise FailedPrecondition(template.format(event=event.value, state=previous.value))
    state = rule.to or previous
    if rule.unpause:
        state = State(locked.paused_from or State.QUEUED.value)

    now = now_us()
    at = locked.last_activity_time
    written: list[ActivityRecord] = []
    for activity in new_activities:
        at = max(now, at + MIN_ACTIVITY_GAP_US)
        written.append(
            await activities.append(writer, session_id=session_id, activity=activity, at=at)
        )
    values: dict[str, object] = {"state": state.value, "update_time": max(now, at)}
    if written:
        values["last_activity_time"] = at
    if outputs is not None:
        values["outputs"] = json.dumps([o.to_wire() for o in outputs], separators=(",", ":"))
    # Remembered on the way into PAUSED (a message while paused leaves it), forgotten on
    # the way out.
    paused_from = locked.paused_from
    if state is S.PAUSED and previous is not S.PAUSED:
        values["paused_from"] = paused_from = previous.value
    elif previous is S.PAUSED and state is not S.PAUSED:
        values["paused_from"] = paused_from = None
    # A bound parameter may not share a column's name in an UPDATE's SET.
    params = {f"new_{name}": value for name, value in values.items()}
    await writer.run(
        ("sessions.transition", *values),
        lambda: _update_statement().values({name: bindparam(f"new_{name}") for name in values}),
        {**params, "session_id": session_id},
    )
    locked.state, locked.paused_from = state, paused_from
    if written:
        locked.last_activity_time = at
    if rule.enqueue:
        await jobs.enqueue(writer, session_id=session_id)
    if rule.withdraw:
        await jobs.withdraw(writer, session_id=session_id)
    result = TransitionResult(previous=previous, state=state, activities=written)
    await writer.announce(owner_id=locked.owner_id, session_id=session_id)
    await webhook_outbox.record_transition(
        writer, owner_id=locked.owner_id, session_id=session_id, result=result
    )
    return result
