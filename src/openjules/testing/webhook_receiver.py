"""A webhook receiver: a real HTTP server that records every request it gets.

Tests point a webhook at ``receiver.url`` and read what arrived::

    with WebhookReceiver() as receiver:
        receiver.answer(500)              # fail every delivery until told otherwise
        receiver.answer(503, times=3)     # ... or only the next three
        receiver.answer(200)              # recover
        receiver.answer(500, delay=0.5)   # slowly
        got = receiver.wait_for(lambda requests: len(requests) >= 2)
        standardwebhooks.Webhook(secret).verify(got[0].body, got[0].headers)

Every request is recorded (method, path, headers, body) whatever it is answered.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from openjules.testing.server import BackgroundServer, ThreadedUvicorn

DEFAULT_WAIT_S = 30.0


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(BackgroundServer):
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        # The answer for the next ``_times`` requests (None: for every request).
        self._status = 200
        self._times: int | None = None
        self._delay = 0.0
        self._server = ThreadedUvicorn(lambda _port: self._app(), name="webhook-receiver")
        self.url = f"{self._server.url}/hook"

    def answer(self, status: int, *, times: int | None = None, delay: float = 0.0) -> None:
        """Answer ``status`` to the next ``times`` requests (then 200 at once), or to every
        request until told otherwise; ``delay`` seconds after each request arrived."""
        with self._changed:
            self._status, self._times, self._delay = status, times, delay

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._changed:
            return list(self._requests)

    def wait_for(
        self,
        condition: Callable[[list[ReceivedRequest]], bool],
        *,
        timeout: float = DEFAULT_WAIT_S,
    ) -> list[ReceivedRequest]:
        """The requests so far, once ``condition`` holds for them; AssertionError (showing
        what did arrive) if it does not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self._requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [r.body.decode(errors="replace")[:200] for r in self._requests]
                    raise AssertionError(f"the receiver got {len(got)} requests: {got}")
                self._changed.wait(left)
            return list(self._requests)

    def _app(self) -> ASGIApp:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/{path:path}", self._receive, methods=methods),
            ]
        )

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        with self._changed:
            status, delay = self._status, self._delay
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._status, self._times, self._delay = 200, None, 0.0
            self._requests.append(
                ReceivedRequest(
                    method=request.method,
                    path=request.url.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    status=status,
                )
            )
            self._changed.notify_all()
        if delay:
            await asyncio.sleep(delay)
        return Response(b"ok" if status < 400 else b"scripted failure", status_code=status)
