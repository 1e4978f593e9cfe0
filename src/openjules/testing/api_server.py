"""The API alone, for tests of how it fails: ``APIServer``.

``LiveServer`` runs the whole server (migrations, engine, API), so it cannot start on a
database it cannot reach and never raises an unexpected exception on purpose. This runs
the real app, ``openjules.api.create_app(settings)``, under the real uvicorn on a free
loopback port, without migrating and without the engine, so that:

- pointed at a database that cannot be reached (a PostgreSQL URL with a closed port, a
  SQLite path that is a directory), every request meets a real connection error;
- with ``crash_route=True`` it also serves ``GET /testing/crash``, which raises an
  unexpected exception, for what a client sees after a 500 (this route exists only
  here, never in ``openjules serve``).

``with APIServer(settings) as server: httpx.get(server.url + "/readyz")``.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from openjules.api import create_app
from openjules.settings import Settings
from openjules.testing.server import BackgroundServer, ThreadedUvicorn

CRASH_PATH = "/testing/crash"


class Crash(RuntimeError):
    """What ``GET /testing/crash`` raises: an exception no handler knows."""


class APIServer(BackgroundServer):
    def __init__(self, settings: Settings, *, crash_route: bool = False) -> None:
        self._crash_route = crash_route
        self._server = ThreadedUvicorn(self._app, name="openjules-api-only", settings=settings)
        self.url = self._server.url
        self.api = f"{self.url}/v1alpha"
        self.settings: Settings = settings.model_copy(
            update={"host": "127.0.0.1", "port": self._server.port}
        )

    def _app(self, _port: int) -> ASGIApp:
        app = create_app(self.settings)
        if self._crash_route:

            async def crash() -> None:
                raise Crash("raised on purpose by openjules.testing.api_server")

            app.add_api_route(CRASH_PATH, crash, methods=["GET"], include_in_schema=False)
        return app
