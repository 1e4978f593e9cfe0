"""The process's fan-out of session changes to its open streams.

One hub per app hears ``db.changes`` once. When a session that someone follows changes,
the hub runs one refresh for it: one activities query from the oldest cursor of that
session's activity streams, and one read of the session row shared by its session
streams and its owner's list streams. Each result is encoded once and handed to every
follower's bounded queue; open streams therefore cost memory, not database queries.

Refreshes coalesce: a change heard while a refresh of the same session runs causes
exactly one more refresh after it (which sees that change and any others meanwhile).
At most ``MAX_CONCURRENT_REFRESHES`` run at once, so the database connections the hub
uses do not grow with the number of streams or sessions followed.

A follower whose queue is full (its client stopped reading) is ended rather than
buffered without bound; the client reconnects, with Last-Event-ID for activities.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._cancellation import stop_tasks
from openjules.api.sse import KEEP_ALIVE, encode_event
from openjules.api.stream_filters import activity_matches, session_matches
from openjules.store import activities, sessions, tables
from openjules.store.changes import EVERYTHING, Change, Everything
from openjules.store.clock import now_us
from openjules.store.database import Database
from openjules.store.query import Filter
from openjules.store.sessions import SessionRecord

log = logging.getLogger("openjules.api.streams")

# Events a follower may have waiting before it is ended as a client that stopped reading.
QUEUE_LIMIT = 1000
MAX_CONCURRENT_REFRESHES = 4
# Activities read per query of a refresh (a follower far behind takes several pages).
REFRESH_PAGE = 200
# After a refresh failed (e.g. the database is unavailable), try again this much later.
RETRY_PAUSE_S = 1.0
# After notifications may have been missed, list streams look again at their owner's
# sessions updated this long before the oldest of them opened (at most LIST_SCAN_LIMIT).
LIST_SCAN_LOOKBACK_US = 5_000_000
LIST_SCAN_LIMIT = 1000

RenderSession = Callable[[SessionRecord], str]


class Follower:
    """One open stream's place in the hub: a bounded queue of encoded events."""

    def __init__(self, *, limit: int = QUEUE_LIMIT) -> None:
        self._queue: deque[bytes] = deque()
        self._limit = limit
        self._ready = asyncio.Event()
        self.ended = False
        self.overflowed = False

    def offer(self, chunk: bytes) -> None:
        if self.ended:
            return
        if len(self._queue) >= self._limit:
            self.overflowed = True
            self._queue.clear()  # it will not be read: free it now
            self.end()
            return
        self._queue.append(chunk)
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def chunks(self, *, keepalive_seconds: float) -> AsyncIterator[bytes]:
        """The queued events as they come, a keep-alive comment after each quiet
        ``keepalive_seconds``, until the follower is ended (what was queued is sent
        first, unless it overflowed)."""
        while True:
            if self._queue:
                yield self._queue.popleft()
                continue
            if self.ended:
                return
            self._ready.clear()
            try:
                async with asyncio.timeout(keepalive_seconds):
                    await self._ready.wait()
            except TimeoutError:
                yield KEEP_ALIVE


class ActivityFollower(Follower):
    def __init__(self, *, session_id: str, flt: Filter, after_ns: int) -> None:
        super().__init__()
        self.session_id = session_id
        self.flt = flt
        # The createTime (ns) of the last activity this stream has passed: it wants only
        # later ones. Per session, commit order is createTime order, so this is exact.
        self.cursor_ns = after_ns


class SessionFollower(Follower):
    def __init__(self, *, record: SessionRecord, sent: bytes) -> None:
        super().__init__()
        self.session_id = record.id
        self.last = sent


class ListFollower(Follower):
    def __init__(self, *, owner_id: int, flt: Filter) -> None:
        super().__init__()
        self.owner_id = owner_id
        self.flt = flt
        self.opened_us = now_us()
        # What was last sent of each session: an unchanged session is not sent again.
        self.last: dict[str, bytes] = {}


@dataclass
class _Followed:
    """The followers of one session."""

    activities: set[ActivityFollower] = field(default_factory=set)
    sessions: set[SessionFollower] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.activities or self.sessions)


class StreamHub:
    def __init__(self, *, database: Database, render_session: RenderSession) -> None:
        self._db = database
        self._render = render_session
        self._followed: dict[str, _Followed] = {}
        self._lists: dict[int, set[ListFollower]] = {}
        # Session -> whether another refresh is wanted after the one running.
        self._refreshing: dict[str, bool] = {}
        self._scanning: dict[int, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_REFRESHES)
        self._unsubscribe: Callable[[], None] | None = None
        self.closed = False

    # Lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self._db.changes.subscribe(self._heard)

    def end_streams(self) -> None:
        """End every stream (cleanly: what each has queued is still sent) and take no
        more: the server is shutting down, and would otherwise wait for them forever."""
        self.closed = True
        for followed in self._followed.values():
            for follower in (*followed.activities, *followed.sessions):
                follower.end()
        for followers in self._lists.values():
            for list_follower in followers:
                list_follower.end()

    async def stop(self) -> None:
        self.end_streams()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await stop_tasks(list(self._tasks))

    # Following ----------------------------------------------------------------------

    def follow_activities(self, *, session_id: str, flt: Filter, after_ns: int) -> ActivityFollower:
        """Activities after ``after_ns`` from now on. A refresh is run at once, so what
        was committed after the caller's own history read is not missed."""
        follower = ActivityFollower(session_id=session_id, flt=flt, after_ns=after_ns)
        if self._join(follower):
            self._followed.setdefault(session_id, _Followed()).activities.add(follower)
            self._refresh_soon(session_id)
        return follower

    def follow_session(self, *, record: SessionRecord) -> SessionFollower:
        """The session as read now (sent first), then on every change."""
        sent = self._session_event(record)
        follower = SessionFollower(record=record, sent=sent)
        follower.offer(sent)
        if self._join(follower):
            self._followed.setdefault(record.id, _Followed()).sessions.add(follower)
            self._refresh_soon(record.id)
        return follower

    def follow_list(self, *, owner_id: int, flt: Filter) -> ListFollower:
        follower = ListFollower(owner_id=owner_id, flt=flt)
        if self._join(follower):
            self._lists.setdefault(owner_id, set()).add(follower)
        return follower

    def _join(self, follower: Follower) -> bool:
        if self.closed:
            follower.end()
            return False
        return True

    def leave(self, follower: Follower) -> None:
        follower.end()
        if isinstance(follower, ListFollower):
            followers = self._lists.get(follower.owner_id)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._lists[follower.owner_id]
            return
        if not isinstance(follower, ActivityFollower | SessionFollower):
            return
        followed = self._followed.get(follower.session_id)
        if followed is None:
            return
        if isinstance(follower, ActivityFollower):
            followed.activities.discard(follower)
        else:
            followed.sessions.discard(follower)
        if not followed:
            del self._followed[follower.session_id]

    # Hearing of changes -------------------------------------------------------------

    def _heard(self, change: Change | Everything) -> None:
        if self.closed:
            return
        if change is EVERYTHING or not isinstance(change, Change):
            for session_id in list(self._followed):
                self._refresh_soon(session_id)
            for owner_id in list(self._lists):
                self._scan_soon(owner_id)
            return
        if change.session_id in self._followed or change.owner_id in self._lists:
            self._refresh_soon(change.session_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refresh_soon(self, session_id: str) -> None:
        if session_id in self._refreshing:
            self._refreshing[session_id] = True  # once more after the one running
            return
        self._refreshing[session_id] = False
        self._spawn(self._refreshes(session_id), f"openjules-stream-refresh-{session_id}")

    async def _refreshes(self, session_id: str) -> None:
        try:
            while not self.closed:
                self._refreshing[session_id] = False
                try:
                    async with self._limit:
                        await self._refresh(session_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("refreshing streams of session %s failed: %r", session_id, exc)
                    self._refreshing[session_id] = True
                    await asyncio.sleep(RETRY_PAUSE_S)
                if not self._refreshing.get(session_id):
                    return
        finally:
            self._refreshing.pop(session_id, None)

    async def _refresh(self, session_id: str) -> None:
        followed = self._followed.get(session_id)
        readers = list(followed.activities) if followed else []
        async with self._db.read() as conn:
            if readers:
                await self._pass_activities(conn, session_id, readers)
            # Also for activity streams alone: a deleted session ends them.
            record = await sessions.find(conn, session_id=session_id)
            self._pass_session(session_id, record)

    async def _pass_activities(
        self, conn: AsyncConnection, session_id: str, readers: list[ActivityFollower]
    ) -> None:
        after_ns = min(f.cursor_ns for f in readers)
        while True:
            page, token = await activities.list_page(
                conn,
                session_id=session_id,
                flt=Filter(),
                page_size=REFRESH_PAGE,
                after_ns=after_ns + 1,
            )
            for record in page:
                ns = record.create_time * 1000
                chunk: bytes | None = None
                for follower in readers:
                    if ns <= follower.cursor_ns or follower.ended:
                        continue
                    follower.cursor_ns = ns
                    if activity_matches(follower.flt, create_time_us=record.create_time):
                        if chunk is None:  # encoded once, shared by every stream
                            chunk = activity_event(record)
                        follower.offer(chunk)
            if not token:
                return
            after_ns = int(token) - 1

    def _pass_session(self, session_id: str, record: SessionRecord | None) -> None:
        followed = self._followed.get(session_id)
        if record is None:  # deleted: nothing more will come
            if followed is not None:
                for follower in (*followed.activities, *followed.sessions):
                    follower.end()
            return
        chunk = self._session_event(record)
        if followed is not None:
            for session_follower in followed.sessions:
                if session_follower.last != chunk:
                    session_follower.last = chunk
                    session_follower.offer(chunk)
        for list_follower in self._lists.get(record.owner_id, ()):
            self._pass_listed(list_follower, record, chunk)

    def _pass_listed(self, follower: ListFollower, record: SessionRecord, chunk: bytes) -> None:
        if follower.last.get(record.id) == chunk or not session_matches(follower.flt, record):
            return
        follower.last[record.id] = chunk
        follower.offer(chunk)

    def _scan_soon(self, owner_id: int) -> None:
        if owner_id in self._scanning:
            self._scanning[owner_id] = True
            return
        self._scanning[owner_id] = False
        self._spawn(self._scans(owner_id), f"openjules-stream-scan-{owner_id}")

    async def _scans(self, owner_id: int) -> None:
        """After notifications may have been missed: the owner's recently updated sessions."""
        try:
            while not self.closed:
                self._scanning[owner_id] = False
                followers = self._lists.get(owner_id)
                if not followers:
                    return
                since = min(f.opened_us for f in followers) - LIST_SCAN_LOOKBACK_US
                s = tables.sessions.c
                try:
                    async with self._limit, self._db.read() as conn:
                        rows = (
                            await conn.execute(
                                select(tables.sessions)
                                .where(s.owner_id == owner_id, s.update_time >= since)
                                .order_by(s.update_time.desc())
                                .limit(LIST_SCAN_LIMIT)
                            )
                        ).all()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("looking again at sessions of user %s failed: %r", owner_id, exc)
                    self._scanning[owner_id] = True
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                for row in reversed(rows):
                    record = SessionRecord.from_row(row)
                    chunk = self._session_event(record)
                    for follower in self._lists.get(owner_id, ()):
                        self._pass_listed(follower, record, chunk)
                if not self._scanning.get(owner_id):
                    return
        finally:
            self._scanning.pop(owner_id, None)

    def _session_event(self, record: SessionRecord) -> bytes:
        return encode_event(event="session", data=self._render(record))


def activity_event(record: activities.ActivityRecord) -> bytes:
    """``event: activity``, its createTime in decimal nanoseconds as the id, and exactly
    what activities.get answers as the data."""
    return encode_event(
        event="activity",
        event_id=activities.page_token_at(record.create_time),
        data=record.render(),
    )
