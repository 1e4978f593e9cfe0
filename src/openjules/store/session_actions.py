"""What a person can do to a session, once for every front end: the API's verbs and the
web app's buttons run these same actions.

Each action is one change, made in the caller's transaction through the transition
table (so a refusal is FAILED_PRECONDITION), plus what the runner must be told once the
transaction has committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from openjules._errors import FieldViolation, InvalidArgument
from openjules._types import ActivityKind, Originator, ProgressUpdated, SessionFailed, UserMessaged
from openjules.store import plans, sessions, transitions
from openjules.store.activities import NewActivity
from openjules.store.sessions import SessionRecord
from openjules.store.transitions import Event
from openjules.store.writer import Writer


class Then(Enum):
    """What the runner is told once an action's transaction has committed."""

    NOTHING = "nothing"
    WAKE = "wake"  # a job was enqueued: start it now rather than at the next poll
    STOP = "stop"  # the session wants no more work: stop what runs in this process now


# An action's change: the session as it left it, or None where the API answers ``{}``.
Change = Callable[[Writer, int, str], Awaitable[SessionRecord | None]]


@dataclass(frozen=True)
class Action:
    change: Change
    then: Then

    async def apply(
        self, writer: Writer, *, owner_id: int, session_id: str
    ) -> SessionRecord | None:
        sessions.check_session_id(session_id)
        return await self.change(writer, owner_id, session_id)


def _by_user(event: Event, kind: ActivityKind, *, answer: bool) -> Change:
    """A change that applies ``event`` with one activity of the user's; ``answer``: the
    result is the session as the change left it."""

    async def change(writer: Writer, owner_id: int, session_id: str) -> SessionRecord | None:
        await transitions.apply(
            writer,
            session_id=session_id,
            owner_id=owner_id,
            event=event,
            new_activities=[NewActivity(kind=kind, originator=Originator.USER)],
        )
        if not answer:
            return None
        return await sessions.get_on(writer, owner_id=owner_id, session_id=session_id)

    return change


def _archived(archived: bool) -> Change:
    async def change(writer: Writer, owner_id: int, session_id: str) -> SessionRecord:
        return await sessions.set_archived(
            writer, owner_id=owner_id, session_id=session_id, archived=archived
        )

    return change


async def _approve(writer: Writer, owner_id: int, session_id: str) -> None:
    await plans.approve_latest(writer, owner_id=owner_id, session_id=session_id)


async def _delete(writer: Writer, owner_id: int, session_id: str) -> None:
    await sessions.delete_session(writer, owner_id=owner_id, session_id=session_id)


CANCELLED_REASON = "Cancelled by the user."
PAUSED_TITLE = "Paused by the user"
RESUMED_TITLE = "Resumed by the user"

APPROVE_PLAN = Action(_approve, Then.WAKE)
ARCHIVE = Action(_archived(True), Then.NOTHING)
UNARCHIVE = Action(_archived(False), Then.NOTHING)
# Stops the agent and ends the session FAILED; a later message wakes it like any failure.
CANCEL = Action(
    _by_user(Event.CANCELLED, SessionFailed(reason=CANCELLED_REASON), answer=True), Then.STOP
)
# Stops the agent and holds the session PAUSED (no worker, process or sandbox).
PAUSE = Action(_by_user(Event.PAUSED, ProgressUpdated(title=PAUSED_TITLE), answer=True), Then.STOP)
# Back to the state it was paused in; the agent continues from its last recorded step.
RESUME = Action(
    _by_user(Event.RESUMED, ProgressUpdated(title=RESUMED_TITLE), answer=True), Then.WAKE
)
DELETE = Action(_delete, Then.STOP)


def send_message(prompt: str, *, field: str = "prompt") -> Action:
    """The user's message to the agent (wakes a session that waits or has ended)."""
    if not prompt.strip():
        raise InvalidArgument(
            "The prompt is required.",
            field_violations=[FieldViolation(field, "The prompt must not be empty.")],
        )
    change = _by_user(Event.USER_MESSAGED, UserMessaged(user_message=prompt), answer=False)
    return Action(change, Then.WAKE)
