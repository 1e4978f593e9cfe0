"""Run the real openjules app under uvicorn on a loopback port, in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import uvicorn
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp

from openjules.api import create_app
from openjules.engine.forge import catalog
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.github import GitHubClient
from openjules.engine.repository import describe_repository
from openjules.settings import Settings
from openjules.store import sources, users
from openjules.store.oneshot import run_write

START_TIMEOUT_S = 30.0


class ThreadedUvicorn:
    """Any ASGI app under uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app_factory: Callable[[int], ASGIApp], *, name: str) -> None:
        # proto IPPROTO_TCP (not 0) so asyncio sets TCP_NODELAY on accepted connections;
        # without it each response waits ~40 ms on a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app_factory(self.port), log_level="warning", lifespan="on", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server {self._thread.name} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server {self._thread.name} did not start in time")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)
        self._socket.close()


class BackgroundServer:
    """Start/stop and ``with`` support for a server held in ``self._server``."""

    _server: ThreadedUvicorn

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LiveServer(BackgroundServer):
    """``with LiveServer(settings) as server: httpx.get(server.url + "/healthz")``.

    ``settings.port`` is replaced by a free port chosen before the app starts, so
    ``Session.url`` values name the real address.
    """

    def __init__(self, settings: Settings) -> None:
        def factory(port: int) -> ASGIApp:
            self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
            return create_app(self.settings)

        self._server = ThreadedUvicorn(factory, name="openjules-live")
        self.url = self._server.url
        self.api = f"{self.url}/v1alpha"


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
    """Register a git repository as ``sources/github/OWNER/REPO`` (what the CLI does)."""
    record = describe_repository(location, owner=owner, repo=repo, is_private=is_private)

    async def action(conn: AsyncConnection) -> None:
        await sources.upsert(conn, record=record)

    run_write(settings.resolved_database_url(), action)
    return record.name


def register_github_source(settings: Settings, *, owner: str, repo: str) -> str:
    """Register ``OWNER/REPO`` of the GitHub ``settings`` point at (what
    ``openjules sources add github:OWNER/REPO`` does); returns the source name."""
    with GitHubClient(GitHubAccess.from_settings(settings)) as client:
        record = catalog.repository(client, owner=owner, repo=repo)
    if isinstance(record, catalog.Skipped):
        raise ValueError(f"{record.full_name} cannot be a source: {record.reason}")

    async def action(conn: AsyncConnection) -> None:
        await sources.upsert(conn, record=record)

    run_write(settings.resolved_database_url(), action)
    return record.name
