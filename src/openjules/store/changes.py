"""Change notifications: who wants to know, in this process, that a session changed.

Every transaction that changes a session or adds one of its activities calls
``announce(conn, …)``. Listeners hear about it three ways, whoever made the change:

- a write of this process: right after its commit (``Database.write`` publishes what the
  transaction announced; nothing is published for a transaction that rolled back);
- on PostgreSQL, a write of any other process: ``announce`` also sends ``pg_notify``,
  which PostgreSQL delivers at commit to the one ``LISTEN`` connection of each process;
- on SQLite, a write of another process of the same ``serve`` (``--http-workers``): it
  sends the change to the others right after its commit (``store.change_peers``);
- on SQLite, a write of any other process (an ``openjules worker`` beside the server, or
  a change the socket dropped): one poll per process finds sessions whose update time
  moved.

A notification only says *which* session changed; listeners read what they need. On a
reconnect of the listening connection, notifications may have been missed: listeners
then hear ``EVERYTHING`` and look again at whatever they follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import psycopg
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._cancellation import stop_tasks
from openjules.store import tables
from openjules.store.change_peers import Announced, LocalPeers, PeerLink
from openjules.store.clock import now_us

if TYPE_CHECKING:
    from openjules.store.database import Database

log = logging.getLogger("openjules.store.changes")

CHANNEL = "openjules_changes"
# Keys of ``Connection.info`` for the changes a write transaction announced and for the
# process that writes (so its own notifications are not published twice).
PENDING_KEY = "openjules_changes"
ORIGIN_KEY = "openjules_origin"
# The SQLite poll looks back this far past the newest change it saw: a transaction takes
# its update time before it commits, so a change may become visible a little "late".
POLL_LOOKBACK_US = 5_000_000
# Reconnecting the listener: 0.5 s, 1 s, 2 s, … at most this long between attempts.
MAX_RECONNECT_PAUSE_S = 5.0


@dataclass(frozen=True)
class Change:
    owner_id: int
    session_id: str
    # For a change announced by this process: when (µs), taken in its transaction after
    # the session's update time. Not part of the change's identity.
    announced_us: int = field(default=0, compare=False)

    @property
    def made_here(self) -> bool:
        """Announced by a write of this process, not heard from another one."""
        return self.announced_us > 0


class Everything:
    """Notifications may have been missed: every listener should look again."""

    def __repr__(self) -> str:
        return "EVERYTHING"


EVERYTHING: Final = Everything()
Listener = Callable[[Change | Everything], None]


# Built once: every announce on PostgreSQL sends it (``Database.write`` and the direct
# writes of ``store.direct_write`` alike).
NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def notify_params(*, origin: str, owner_id: int, session_id: str) -> dict[str, str]:
    return {"channel": CHANNEL, "payload": f"{origin}|{owner_id}|{session_id}"}


def remember(pending: set[Change], *, owner_id: int, session_id: str) -> bool:
    """Add the change to a transaction's ``pending`` ones; whether it is new there."""
    change = Change(owner_id=owner_id, session_id=session_id, announced_us=now_us())
    if change in pending:
        pending.discard(change)  # the later time: after every update of the transaction
        pending.add(change)
        return False
    pending.add(change)
    return True


async def announce(conn: AsyncConnection, *, owner_id: int, session_id: str) -> None:
    """Record, in the transaction on ``conn``, that this session changed."""
    pending: set[Change] = conn.info.setdefault(PENDING_KEY, set())
    if not remember(pending, owner_id=owner_id, session_id=session_id):
        return
    if conn.dialect.name == "postgresql":
        origin = conn.info.get(ORIGIN_KEY, "")
        await conn.execute(
            NOTIFY, notify_params(origin=origin, owner_id=owner_id, session_id=session_id)
        )


def take_announced(conn: AsyncConnection) -> set[Change]:
    """The changes announced on ``conn`` since the last call (and forget them).

    An invalidated connection has none: a statement was interrupted (its task cancelled,
    the database gone), so its transaction is lost, and reading ``conn.info`` would
    reconnect it synchronously, which fails outside SQLAlchemy's greenlet
    (``MissingGreenlet``) and, in a write's cleanup, would replace the cancellation.
    """
    if conn.invalidated:
        return set()
    pending: set[Change] = conn.info.pop(PENDING_KEY, set())
    return pending


class ChangeFeed:
    """The process's listeners and what feeds them (see the module docstring).

    Listeners are plain callables run in the event loop: they must not block (set an
    event, put on a queue, create a task). ``start`` is idempotent; ``stop`` ends the
    listening connection or the poll.
    """

    def __init__(
        self, *, database: Database, poll_seconds: float, peers: LocalPeers | None = None
    ) -> None:
        self._db = database
        self.poll_seconds = poll_seconds
        # The other processes of this server, told of each change at once (SQLite only).
        self._peers = peers if database.is_sqlite else None
        self._link: PeerLink | None = None
        # Written into every notification of this process, which then skips its own.
        self.origin = secrets.token_hex(8)
        self._listeners: list[Listener] = []
        # Session -> when this process last announced a change to it: the SQLite poll
        # does not report again what this process already published.
        self._published_us: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        # The listening connection is up (PostgreSQL) or the poll has run once (SQLite).
        self.watching = asyncio.Event()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every change from now on; returns the way to stop."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, changes: Iterable[Change | Everything]) -> None:
        made_here: list[Announced] = []
        for change in changes:
            if self._db.is_sqlite and isinstance(change, Change) and change.announced_us:
                previous = self._published_us.get(change.session_id, 0)
                self._published_us[change.session_id] = max(previous, change.announced_us)
                made_here.append((change.owner_id, change.session_id, change.announced_us))
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:  # one broken listener must not starve the others
                    log.exception("a change listener failed")
        if made_here and self._link is not None:
            self._link.tell(made_here)

    def _heard_from_peers(self, heard: list[Announced]) -> None:
        for _, session_id, announced_us in heard:
            # The poll need not report this change again (nor any older one): a later
            # change of that session has a later update time, whoever makes it.
            previous = self._published_us.get(session_id, 0)
            self._published_us[session_id] = max(previous, announced_us)
        self.publish(Change(owner_id=owner, session_id=session) for owner, session, _ in heard)

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self.watching.clear()
        if self._peers is not None and self._link is None:
            self._link = PeerLink(self._peers, heard=self._heard_from_peers)
            self._link.open()
        watch = self._listen if not self._db.is_sqlite else self._poll
        self._task = asyncio.create_task(watch(), name="openjules-change-feed")

    async def stop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()
        task, self._task = self._task, None
        if task is None:
            return
        await stop_tasks([task])

    async def _listen(self) -> None:
        """PostgreSQL: one LISTEN connection, reconnected after any failure."""
        conninfo = make_url(self._db.url).set(drivername="postgresql")
        dsn = conninfo.render_as_string(hide_password=False)
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        log.warning("listening for changes again")
                        self.publish([EVERYTHING])  # what happened while it was down
                    failures = 0
                    self.watching.set()
                    async for notify in conn.notifies():
                        change = self._parse(notify.payload)
                        if change is not None:
                            self.publish([change])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.watching.clear()
                failures += 1
                if failures == 1:
                    log.warning("listening for changes failed (%s); reconnecting", exc)
                await asyncio.sleep(min(0.5 * 2 ** (failures - 1), MAX_RECONNECT_PAUSE_S))

    def _parse(self, payload: str) -> Change | None:
        origin, _, rest = payload.partition("|")
        owner, _, session_id = rest.partition("|")
        if origin == self.origin or not owner.isdigit() or not session_id:
            return None
        return Change(owner_id=int(owner), session_id=session_id)

    async def _poll(self) -> None:
        """SQLite: sessions whose update time moved since the last look."""
        s = tables.sessions.c
        newest = now_us()
        seen: dict[str, int] = {}  # session -> update time, within the lookback window
        # The first look only learns what is there: a change made before the feed started
        # is not news (nobody was listening), and reporting it would wake every listener.
        first = True
        while True:
            try:
                async with self._db.read() as conn:
                    rows = (
                        await conn.execute(
                            select(s.id, s.owner_id, s.update_time).where(
                                s.update_time >= newest - POLL_LOOKBACK_US
                            )
                        )
                    ).all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the file is locked for long: try next time
                log.debug("the change poll failed: %s", exc)
                rows = []
            # A row whose update time is older than this process's own announcement of
            # it was already published (its change was this process's, or an earlier one).
            changed = [
                Change(owner_id=r.owner_id, session_id=r.id)
                for r in rows
                if seen.get(r.id) != r.update_time
                and r.update_time >= self._published_us.get(r.id, 0)
            ]
            for r in rows:
                seen[r.id] = r.update_time
                newest = max(newest, r.update_time)
            horizon = newest - POLL_LOOKBACK_US
            for session_id in [k for k, v in seen.items() if v < horizon]:
                del seen[session_id]
            for session_id in [k for k, v in self._published_us.items() if v < horizon]:
                del self._published_us[session_id]
            if changed and not first:
                self.publish(changed)
            first = False
            self.watching.set()
            await asyncio.sleep(self.poll_seconds)
