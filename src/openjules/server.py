"""The server process, composed: migrate the schema, start the engine, serve the API on
its runner. ``openjules serve`` and the test kit's ``LiveServer`` both run it this way, so
what tests start is what operators start.

Order matters both ways: the socket is bound before anything starts (a port in use stops
the process before any worker claims a session), and on shutdown the API stops taking
requests before the engine's workers stop.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from enum import StrEnum

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from openjules import web
from openjules.api import create_app, end_streams
from openjules.engine.service import EngineService
from openjules.http_protocol import (
    ConnectionLimits,
    RateLimitedLog,
    default_max_connections,
    install_accept_error_handler,
    protocol_class,
    raise_open_files_limit,
)
from openjules.settings import Settings
from openjules.store.change_peers import LocalPeers
from openjules.store.migrate import upgrade_to_head
from openjules.timing import ObserverFactory

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LISTEN_BACKLOG = 2048


class ProcessRole(StrEnum):
    """What a server process runs besides the API. ``openjules serve --http-workers N``
    starts N processes on one port, and only one of them may run sessions and send webhook
    events (one runner and one sender per server: the others would only compete for the
    same jobs and deliveries, and each would hold sandboxes and model calls of its own)."""

    # The API, the agent runner (its admission limit from settings) and the webhook sender.
    ALL = "all"
    # The API alone: its runner takes submit/cancel for the work the other process runs.
    API = "api"


class PortInUse(OSError):
    """The address is taken; ``str()`` says which."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it every small response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise PortInUse(f"{host}:{port} is already in use by another process") from None
        raise
    return sock


def uvicorn_config(app: ASGIApp, *, settings: Settings, log_level: str = "info") -> uvicorn.Config:
    """How every server of this package is run: ``openjules serve``, the test kit's
    ``LiveServer`` (its settings) and its fakes (default settings), so tests run what
    operators run.

    Raises the process's open-files limit to its hard limit first: the connection cap
    that is not configured is derived from it.
    """
    open_files = raise_open_files_limit()
    limits = ConnectionLimits(
        header_timeout_seconds=settings.http_header_timeout_seconds,
        body_timeout_seconds=settings.http_body_timeout_seconds,
        max_connections=settings.http_max_connections or default_max_connections(open_files),
    )
    return uvicorn.Config(
        app,
        http=protocol_class(limits),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # The listening socket's own backlog: kernel-held connections cost no descriptor.
        backlog=LISTEN_BACKLOG,
    )


class Uvicorn(uvicorn.Server):
    """uvicorn where the caller owns the shutdown: a signal ends serving and ``serve()``
    returns (uvicorn would re-raise the signal, killing the process before the engine has
    stopped), and the app's open event streams end cleanly first. ``on_listening`` runs
    once the socket accepts connections."""

    def __init__(
        self, config: uvicorn.Config, *, on_listening: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.on_listening = on_listening

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Out of descriptors, asyncio logs each failed accept with a traceback: one line per
        # interval instead (stderr is not for filling the disk).
        install_accept_error_handler(asyncio.get_running_loop(), RateLimitedLog())
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_listening is not None:
            self.on_listening()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Open event streams end first: uvicorn waits for every response in flight, and a
        # stream would otherwise never finish (the app hears of the shutdown only after).
        end_streams(self.config.app)
        await super().shutdown(sockets=sockets)


@asynccontextmanager
async def composed_app(
    settings: Settings,
    *,
    observe: ObserverFactory | None = None,
    role: ProcessRole = ProcessRole.ALL,
    migrate: bool = True,
    peers: LocalPeers | None = None,
) -> AsyncIterator[FastAPI]:
    """The app, with the engine running behind it until the context ends. ``migrate``:
    bring the schema to head first (False where a supervising process already did);
    ``peers``: the server's other processes (``store.change_peers``)."""
    if migrate:
        await asyncio.to_thread(upgrade_to_head, settings.resolved_database_url())
    only_api = role is ProcessRole.API
    async with EngineService(
        settings=settings,
        observe=observe,
        workers=0 if only_api else None,
        deliver_webhooks=not only_api,
        peers=peers,
    ) as engine:
        # One database (and its connection pools) for the API and the engine.
        app = create_app(settings, runner=engine.runner, database=engine.db)
        web.install(app)
        yield app


async def serve(
    settings: Settings,
    *,
    sock: socket.socket,
    on_listening: Callable[[], None] | None = None,
    log_level: str = "info",
    role: ProcessRole = ProcessRole.ALL,
    migrate: bool = True,
    peers: LocalPeers | None = None,
) -> None:
    """Serve on ``sock`` until SIGINT or SIGTERM."""
    async with composed_app(settings, role=role, migrate=migrate, peers=peers) as app:
        keep_out_of_collections()
        config = uvicorn_config(app, settings=settings, log_level=log_level)
        await Uvicorn(config, on_listening=on_listening).serve(sockets=[sock])


# Collections of young objects after this many allocations (CPython's default: 700), and
# older generations after this many of the younger one's (default: 10 and 10).
YOUNG_COLLECTION_ALLOCATIONS = 20_000
OLDER_COLLECTION_RATIO = 20


def keep_out_of_collections() -> None:
    """Leave what a started server holds (its modules, app, pools: some 200,000 objects)
    out of the garbage collector's full collections from now on, and collect less often.

    Each collection stops the event loop: a full one walked every object, about 80 ms
    here, and every request and session of the process waited that long. And a server
    allocates fast (JSON, rows, HTTP) while nearly everything it allocates is freed by
    reference counting at once: collecting after every 700 allocations cost a tenth of
    the process's CPU with 100 sessions at once, and the slowest 1% of requests a third
    of their time. What serving makes later is collected as before, just less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, OLDER_COLLECTION_RATIO, OLDER_COLLECTION_RATIO)
