"""The engine, assembled in one place from settings: the database it works on, the
session worker that runs the agent, and the runner that decides when and where sessions
run. ``openjules serve``, ``openjules worker`` and the test kit all start it this way::

    async with EngineService(settings=settings) as engine:
        app = create_app(settings, runner=engine.runner, database=engine.db)
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Self

from openjules.engine.local_runner import LocalRunner
from openjules.engine.runner import Runner
from openjules.engine.session_work import SessionWorker
from openjules.engine.webhooks import WebhookSender
from openjules.settings import RunnerKind, Settings
from openjules.store.backup import keep_open
from openjules.store.change_peers import LocalPeers
from openjules.store.database import Database
from openjules.timing import ObserverFactory

RunnerFactory = Callable[..., Runner]


def _local(*, settings: Settings, db: Database, worker: SessionWorker, workers: int) -> Runner:
    return LocalRunner(
        db=db,
        work=worker.run_session,
        max_sessions=workers,
        user_max_sessions=settings.user_max_concurrent_sessions,
        lease_seconds=settings.lease_seconds,
        give_up=worker.give_up,
    )


def _temporal(*, settings: Settings, db: Database, worker: SessionWorker, workers: int) -> Runner:
    # Imported here: the Temporal SDK is an optional extra (openjules[temporal]).
    from openjules.engine.temporal_runner import TemporalRunner

    return TemporalRunner(
        settings=settings,
        db=db,
        work=worker.run_session,
        max_sessions=workers,
        user_max_sessions=settings.user_max_concurrent_sessions,
        lease_seconds=settings.lease_seconds,
        give_up=worker.give_up,
    )


# One entry per runner kind: a new runner is a module plus a line here.
RUNNERS: dict[RunnerKind, RunnerFactory] = {
    RunnerKind.LOCAL: _local,
    RunnerKind.TEMPORAL: _temporal,
}


class EngineService:
    """Runs sessions while entered (``async with``): at most ``workers`` at once (by
    default ``settings.sessions_at_once()``); ``workers=0`` runs none, but the runner
    still takes ``submit``/``cancel`` for work running in other processes. ``peers``: the
    other processes of the same server, told of each change at once (SQLite)."""

    def __init__(
        self,
        *,
        settings: Settings,
        workers: int | None = None,
        observe: ObserverFactory | None = None,
        deliver_webhooks: bool = True,
        peers: LocalPeers | None = None,
    ) -> None:
        self.settings = settings
        # False where another process of the same server sends them (`serve
        # --http-workers`): one sender per server, not one per HTTP process.
        self.deliver_webhooks = deliver_webhooks
        self.workers = settings.sessions_at_once() if workers is None else workers
        self.db = Database.from_settings(settings, peers=peers)
        self.worker = SessionWorker(settings=settings, db=self.db, observe=observe)
        self.runner: Runner = RUNNERS[RunnerKind(settings.runner)](
            settings=settings, db=self.db, worker=self.worker, workers=self.workers
        )
        # Webhook events are delivered wherever the engine runs (serve and worker).
        self.webhooks = WebhookSender(settings=settings, db=self.db)
        self._held = ExitStack()

    async def start(self) -> None:
        # While the engine runs, `openjules restore` must see the database in use, even
        # when no pooled connection happens to be open (an idle server has none).
        self._held.enter_context(keep_open(self.db.url))
        try:
            # Changes made anywhere reach this process (cancel, pause, webhook events).
            await self.db.changes.start()
            await self.runner.start()
            if self.deliver_webhooks:
                await self.webhooks.start()
        except BaseException:
            self._held.close()
            raise

    async def stop(self) -> None:
        try:
            await self.webhooks.stop()
            await self.runner.stop()
            await self.worker.close()
        finally:
            try:
                await self.db.dispose()
            finally:
                self._held.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
