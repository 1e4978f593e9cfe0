"""What a running app holds: settings, the database, a short-lived key cache, the
per-key request counts and the hub of open streams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.requests import Request

from openjules.api.rate_limit import RateLimiter
from openjules.api.stream_hub import StreamHub
from openjules.engine.runner import Runner
from openjules.settings import Settings
from openjules.store.database import Database
from openjules.store.session_actions import Action, Then
from openjules.store.session_wire import render_session
from openjules.store.sessions import SessionRecord
from openjules.store.users import User


class KeyCache:
    """Remembers authenticated keys for ``ttl`` seconds (0 disables it).

    A revoked key therefore stops working within ``ttl`` seconds in every process.
    """

    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, User]] = {}

    def get(self, secret: str) -> User | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(secret)
        if entry is None:
            return None
        expires, user = entry
        if expires < time.monotonic():
            del self._entries[secret]
            return None
        return user

    def put(self, secret: str, user: User) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[secret] = (time.monotonic() + self.ttl, user)


@dataclass
class AppState:
    settings: Settings
    db: Database
    public_base_url: str
    key_cache: KeyCache = field(default_factory=lambda: KeyCache(0))
    # Told about enqueued and stopped sessions; None when only other processes run them.
    runner: Runner | None = None
    # Requests per API key per minute (settings.rate_limit_per_minute), this process's count.
    rate_limiter: RateLimiter = field(init=False)
    # The open alt=sse streams of this process, fed from ``db.changes``.
    streams: StreamHub = field(init=False)

    def __post_init__(self) -> None:
        self.rate_limiter = RateLimiter(per_minute=self.settings.rate_limit_per_minute)
        self.streams = StreamHub(database=self.db, render_session=self._session_json)

    def _session_json(self, record: SessionRecord) -> str:
        """A session exactly as sessions.get answers it."""
        return render_session(record, base_url=self.public_base_url).to_json().decode()

    async def after(self, action: Action, *, session_id: str) -> None:
        """Tell the runner what ``action`` (committed) asks of it."""
        if action.then is Then.WAKE:
            await self.wake(session_id)
        elif action.then is Then.STOP:
            await self.stop_work(session_id)

    async def wake(self, session_id: str) -> None:
        """A job was enqueued: let a worker claim it now instead of at its next poll."""
        if self.runner is not None:
            await self.runner.submit(session_id)

    async def stop_work(self, session_id: str) -> None:
        """The session no longer wants its running work (e.g. it was deleted)."""
        if self.runner is not None:
            await self.runner.cancel(session_id)

    @staticmethod
    def of(request: Request) -> AppState:
        state: AppState = request.app.state.openjules
        return state
