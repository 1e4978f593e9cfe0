"""Request bodies larger than ``max_request_bytes`` are refused before they are read.

A pure ASGI middleware, in front of everything else, on every path: a declared
``Content-Length`` over the limit is answered at once, without reading a byte of the
body; a body without one (chunked) is counted as it streams in and answered as soon as
the count passes the limit, so the server never holds more than the limit of any body.
The answer is Google's: 400 INVALID_ARGUMENT "Request payload size exceeds the limit".

What happens to the connection: the HTTP server discards the rest of a body the app did
not read. That keeps a keep-alive connection usable when the rest is of a known, modest
size. When it is not (a chunked body, whose end nobody knows, or a declared length far
over the limit) the answer says ``Connection: close``, so the client is not made to send
the rest, and knows to open a new connection.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openjules._errors import InvalidArgument
from openjules.api.errors import envelope_response
from openjules.settings import Settings

log = logging.getLogger("openjules.api")

# A declared body up to this many times the limit is left to the HTTP server to discard
# (cheap, and the connection stays open); beyond it the connection is closed instead.
DRAIN_FACTOR = 4
CONNECTION_CLOSE = (b"connection", b"close")


def too_large(limit: int) -> InvalidArgument:
    return InvalidArgument(f"Request payload size exceeds the limit: {limit} bytes.")


class BodyLimit:
    """Refuses request bodies over ``settings.max_request_bytes``."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            close = declared > self.limit * DRAIN_FACTOR
            await self.refuse(scope, receive, send, close=close)
            return
        await _Guard(self, scope, receive, send).run()

    async def refuse(self, scope: Scope, receive: Receive, send: Send, *, close: bool) -> None:
        response = envelope_response(too_large(self.limit))
        if close:
            response.headers["connection"] = "close"
        await response(scope, receive, send)


class _Guard:
    """One request whose body is counted as the app reads it."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.response_started = False
        # Set once this middleware has answered: the app's own answer is then dropped.
        self.refused = False
        # Set once the body passed the limit: the app reads no more of it.
        self.cut = False

    async def run(self) -> None:
        try:
            await self.limit.app(self.scope, self.receive, self.send)
        except Exception:
            if not self.refused:
                raise
            # The app failed to read the body we cut off; the client has its answer.
            log.debug("after refusing an oversized body", exc_info=True)

    async def receive(self) -> Message:
        if self.cut:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.limit:
                if not self.response_started:
                    await self._answer()
                # The app sees a client that went away, and stops reading. (Had it
                # already started its answer, it is too late for ours; it finishes its own.)
                self.cut = True
                return {"type": "http.disconnect"}
        return message

    async def _answer(self) -> None:
        self.refused = True
        # The rest of a chunked body is of unknown size: do not wait for it.
        await self.limit.refuse(self.scope, self._receive, self._send, close=True)

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        # The HTTP server rejects a malformed length before the app is called.
        return None
