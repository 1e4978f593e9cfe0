"""What following a session means, apart from how bytes move: which states a wait ends
on, which activities a stream has already handed out, and when a stream is done.

Shared by ``Client`` and ``AsyncClient`` (their loops differ only in ``await``)."""

from __future__ import annotations

from collections.abc import Collection

from openjules._timestamps import parse_timestamp_ns
from openjules._types import Activity, Session, State
from openjules.client.events import ServerEvent

# A session that has ended; a follow-up message can wake it again.
DONE: frozenset[State] = frozenset({State.COMPLETED, State.FAILED})
# A session that waits for a person: plan approval or an answer.
NEEDS_INPUT: frozenset[State] = frozenset(
    {State.AWAITING_PLAN_APPROVAL, State.AWAITING_USER_FEEDBACK}
)
# Nothing happens until someone acts: the default of ``wait``.
SETTLED: frozenset[State] = DONE | NEEDS_INPUT | {State.PAUSED}

ACTIVITY_EVENT = "activity"
SESSION_EVENT = "session"
# Consecutive failed reconnects of a stream before it gives up (about a minute of backoff:
# long enough to ride out a server restart).
MAX_RECONNECTS = 10
# A stream's read timeout: well beyond the server's keep-alive (15 s by default).
STREAM_READ_TIMEOUT = 60.0


def reached(session: Session, until: Collection[State]) -> bool:
    return session.state in until


def ends_session(activity: Activity) -> bool:
    return activity.session_completed is not None or activity.session_failed is not None


def newer_than_filter(activity: Activity) -> str:
    """The activities filter for what came after ``activity`` (createTime is strictly
    increasing within a session)."""
    return f'create_time>"{activity.create_time}"'


def event_id_of(activity: Activity) -> str:
    """The stream's id for ``activity``: its createTime in decimal nanoseconds."""
    return str(parse_timestamp_ns(activity.create_time))


class ActivityCursor:
    """Where a follower is: the last activity handed out (what a reconnect resumes after,
    as ``Last-Event-ID`` or as a createTime filter) and the ids already handed out, so
    nothing is handed out twice whatever a reconnect or a poll repeats."""

    def __init__(self, *, after: Activity | None) -> None:
        self._seen: set[str] = set()
        self.last: Activity | None = after
        self.last_event_id: str | None = event_id_of(after) if after is not None else None
        if after is not None:
            self._seen.add(after.id)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def poll_filter(self) -> str | None:
        return newer_than_filter(self.last) if self.last is not None else None

    def take_event(self, event: ServerEvent) -> Activity | None:
        if event.event != ACTIVITY_EVENT:
            return None
        activity = Activity.model_validate_json(event.data)
        fresh = self.take(activity)
        if event.event_id:
            self.last_event_id = event.event_id
        return activity if fresh else None

    def take(self, activity: Activity) -> bool:
        """Whether ``activity`` is new (and now the last one handed out)."""
        if activity.id in self._seen:
            return False
        self._seen.add(activity.id)
        self.last = activity
        self.last_event_id = event_id_of(activity)
        return True


def session_of(event: ServerEvent) -> Session | None:
    return Session.model_validate_json(event.data) if event.event == SESSION_EVENT else None
