"""``create_app(settings, runner=…)``: the FastAPI application. Nothing happens until it
starts; the schema is migrated and the runner started by whoever composes the server
(``openjules.server``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from openjules import __version__
from openjules._errors import InvalidArgument
from openjules.api import (
    errors,
    openapi,
    responses,
    routes_activities,
    routes_sessions,
    routes_sources,
    routes_webhooks,
)
from openjules.api.body_limit import BodyLimit
from openjules.api.discovery import discovery_document
from openjules.api.hot_path import HotPath
from openjules.api.json_bodies import JSONBodies
from openjules.api.state import AppState, KeyCache
from openjules.engine.runner import Runner
from openjules.settings import Settings
from openjules.store.database import Database, unavailable

log = logging.getLogger("openjules.api")
# /readyz waits this long for the database to answer before reporting it unavailable
# (a load balancer's probe typically times out after a few seconds).
READINESS_TIMEOUT_S = 2.0


def end_streams(app: object) -> None:
    """End the open event streams of ``app`` (an app of ``create_app``; for any other
    app, nothing): the server is shutting down. uvicorn waits for every response in
    flight before the app's lifespan ends, so the streams must end first, or forever."""
    state = getattr(getattr(app, "state", None), "openjules", None)
    if isinstance(state, AppState):
        state.streams.end_streams()


class App(FastAPI):
    """FastAPI, with the most frequent requests answered first by ``api.hot_path``
    (while the app runs)."""

    hot_path: HotPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_path
        if hot is not None and scope["type"] == "http":
            rest = await hot.serve(scope, receive, send)
            if rest is None:
                return
            receive = rest
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings, *, runner: Runner | None = None, database: Database | None = None
) -> FastAPI:
    """``runner`` is told when sessions are enqueued or stop being runnable; without one,
    workers in other processes find the work at their next poll. ``database`` is shared
    with whoever passes it (the engine of the same process), who also closes it; without
    one the app opens its own while it runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database.from_settings(settings)
        app.state.openjules = AppState(
            settings=settings,
            db=db,
            public_base_url=settings.resolved_public_base_url(),
            key_cache=KeyCache(settings.auth_cache_seconds),
            runner=runner,
        )
        # Live streams hear of every change, whichever process made it.
        await db.changes.start()
        app.state.openjules.streams.start()
        hot_app.hot_path = HotPath(app.state.openjules)
        try:
            yield
        finally:
            hot_app.hot_path = None
            await app.state.openjules.streams.stop()
            if database is None:
                await db.dispose()

    app = hot_app = App(
        title="openjules",
        version=__version__,
        summary="A self-hostable server for the Jules REST API (v1alpha).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(JSONBodies)
    # Outside the body limit, so a browser can read that refusal too.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        max_age=errors.CORS_MAX_AGE_S,
    )
    # Last, so its boundary is the outermost middleware and catches what any other raises.
    errors.install(app)
    openapi.install(app, settings=settings)
    app.include_router(routes_sessions.router)
    app.include_router(routes_activities.router)
    app.include_router(routes_sources.router)
    app.include_router(routes_webhooks.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return responses.JSONBytes(b'{"status":"ok"}')

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """Ready when the database answers (``/healthz`` only says the process is up)."""
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                await AppState.of(request).db.ping()
        except Exception as exc:  # any failure to answer means not ready
            log.warning("readiness check failed: %r", exc)
            raise unavailable(exc) from exc
        return responses.JSONBytes(b'{"status":"ok","database":"ok"}')

    @app.get("/$discovery/rest", include_in_schema=False)
    async def discovery(request: Request, version: Annotated[str, Query()] = "v1alpha") -> Response:
        if version != "v1alpha":
            raise InvalidArgument(f"Unknown API version {version!r}; this server has v1alpha.")
        root = AppState.of(request).public_base_url
        return responses.JSONBytes(json.dumps(discovery_document(root_url=root)).encode())

    return app
