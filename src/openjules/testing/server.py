"""Run the real openjules app under uvicorn on a loopback port, in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp

from openjules.engine.repository import GITHUB_PREFIX, read_source
from openjules.server import Uvicorn, bind, composed_app, uvicorn_config
from openjules.settings import Settings
from openjules.store import sources, users
from openjules.store.oneshot import run_write
from openjules.store.sources import SourceRecord
from openjules.testing.lifecycle import Background
from openjules.timing import ObserverFactory

START_TIMEOUT_S = 30.0
AppContext = Callable[[int], AbstractAsyncContextManager[ASGIApp]]


@asynccontextmanager
async def _plain(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    yield app


class ThreadedUvicorn:
    """An ASGI app under uvicorn on a free loopback port, in a daemon thread.

    ``app_factory(port)`` builds a plain app; ``app_context(port)`` instead yields an app
    with whatever must run around it (openjules' engine) for as long as it is served.
    It is served as ``openjules serve`` serves (``openjules.server.uvicorn_config``) with
    ``settings``' HTTP timeouts and connection limits (default: the defaults).
    """

    def __init__(
        self,
        app_factory: Callable[[int], ASGIApp] | None = None,
        *,
        name: str,
        app_context: AppContext | None = None,
        settings: Settings | None = None,
    ) -> None:
        if app_context is None:
            assert app_factory is not None, "give app_factory or app_context"
            factory = app_factory

            def app_context(port: int) -> AbstractAsyncContextManager[ASGIApp]:
                return _plain(factory(port))

        self._context = app_context
        self._settings = settings
        self._socket = bind("127.0.0.1", 0)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Uvicorn | None = None
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc

    async def _serve(self) -> None:
        async with self._context(self.port) as app:
            # The fakes: the defaults, whatever the environment says to the server under test.
            settings = self._settings or Settings.model_construct()
            config = uvicorn_config(app, settings=settings, log_level="warning")
            self._server = Uvicorn(config, on_listening=self._listening.set)
            await self._server.serve(sockets=[self._socket])

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._listening.wait(0.01):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server {self._thread.name} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server {self._thread.name} did not start in time")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)
        self._socket.close()

    @property
    def running(self) -> bool:
        """Whether the server's thread is still alive (after ``stop``: it hung)."""
        return self._thread.is_alive()


class BackgroundServer(Background):
    """Start/stop and ``with`` support for a server held in ``self._server``."""

    _server: ThreadedUvicorn

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def running(self) -> bool:
        return self._server.running


class LiveServer(BackgroundServer):
    """``with LiveServer(settings) as server: httpx.get(server.url + "/healthz")``.

    The whole server as ``openjules serve`` runs it (migrations, the engine working up to
    ``settings.sessions_at_once()`` sessions at once, the API). ``settings.port`` is
    replaced by the free port it listens on, so ``Session.url`` values name the real
    address. ``observe`` receives the timings of each session run (see
    ``openjules.timing``).
    """

    def __init__(self, settings: Settings, *, observe: ObserverFactory | None = None) -> None:
        self._server = ThreadedUvicorn(
            name="openjules-live", app_context=self._app, settings=settings
        )
        self.url = self._server.url
        self.api = f"{self.url}/v1alpha"
        self.settings: Settings = settings.model_copy(
            update={"host": "127.0.0.1", "port": self._server.port}
        )
        self._observe = observe

    def _app(self, _port: int) -> AbstractAsyncContextManager[ASGIApp]:
        return composed_app(self.settings, observe=self._observe)


def provision_user(settings: Settings, *, name: str) -> str:
    """Create (or reuse) user ``name`` with a fresh API key; returns the key."""

    async def action(conn: AsyncConnection) -> str:
        user = await users.get_or_create_user(conn, name=name)
        key = await users.create_key(conn, user=user, max_live_keys=settings.max_keys_per_user)
        return key.secret

    return run_write(settings.resolved_database_url(), action)


def register_source(
    settings: Settings,
    *,
    location: str,
    owner: str,
    repo: str,
    is_private: bool = False,
) -> str:
    """Register a git repository as ``sources/github/OWNER/REPO`` (what
    ``openjules sources add LOCATION --name OWNER/REPO`` does); returns the source name.
    A refusal raises ``openjules.engine.repository.SourceError``."""
    record = read_source(settings, location, owner=owner, repo=repo, is_private=is_private)
    return _store(settings, record)


def register_github_source(settings: Settings, *, owner: str, repo: str) -> str:
    """Register ``OWNER/REPO`` of the GitHub ``settings`` point at (what
    ``openjules sources add github:OWNER/REPO`` does); returns the source name."""
    return _store(settings, read_source(settings, f"{GITHUB_PREFIX}{owner}/{repo}"))


def _store(settings: Settings, record: SourceRecord) -> str:
    async def action(conn: AsyncConnection) -> None:
        await sources.upsert(conn, record=record)

    run_write(settings.resolved_database_url(), action)
    return record.name
