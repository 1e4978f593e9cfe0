"""Server-Sent Events on the wire: how an event is written, and the streaming response.

The response is a plain ASGI callable rather than Starlette's ``StreamingResponse``: under
uvicorn's ASGI spec 2.3 that one reads ``receive`` for a disconnect, but under 2.4 it
relies on ``send`` raising, which uvicorn never does (it drops what is sent to a client
that left), so a quiet stream to a vanished client would wait forever. Here a
disconnect always ends the stream at once, and the end of the events (the client's
session deleted, the server shutting down) always finishes the response properly, so
the client sees a clean end of the chunked body rather than a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Query
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from openjules._cancellation import stop_tasks
from openjules._errors import InvalidArgument

log = logging.getLogger("openjules.api")

MEDIA_TYPE = "text/event-stream"
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", MEDIA_TYPE.encode()),
    # Caches and proxies must pass every event on as it comes (nginx buffers otherwise).
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEP_ALIVE = b": keep-alive\n\n"
# What Google's ``alt`` parameter may say: absent or ``json`` is the usual answer.
ALT_JSON = "json"
ALT_SSE = "sse"
# A Last-Event-ID is a decimal nanosecond time (the page-token format): 20 digits at most.
MAX_EVENT_ID_DIGITS = 20
# The ``alt`` query parameter of the methods that can stream (``api.openapi`` gives its
# schema and the event-stream media type of their answers).
AltParam = Annotated[
    str | None,
    Query(description="`sse` streams the answer as Server-Sent Events; `json` (default) does not."),
]


def encode_event(*, event: str, data: str, event_id: str | None = None) -> bytes:
    """One event. ``data`` is JSON, which has no raw line breaks; any line break would
    still be carried correctly (one ``data:`` line per line, rejoined by the client)."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    event_id: str | None = None


def decode_event(chunk: bytes) -> Event | None:
    """An event as ``encode_event`` wrote it; None for a comment (a keep-alive)."""
    name, event_id, data = "message", None, []
    for line in chunk.decode().split("\n"):
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "id":
            event_id = value
        elif field == "data":
            data.append(value)
    if not data:
        return None
    return Event(event=name, data="\n".join(data), event_id=event_id)


def wants_stream(alt: str | None) -> bool:
    """Whether ``alt`` asks for a stream; 400 INVALID_ARGUMENT for a value we do not serve."""
    if alt is None or alt == ALT_JSON:
        return False
    if alt == ALT_SSE:
        return True
    raise InvalidArgument(
        f"Invalid value for alt: {alt!r}; this method serves alt=json or alt=sse."
    )


def last_event_id(raw: str | None) -> int | None:
    """The ``Last-Event-ID`` header of an activities stream: the id (createTime in decimal
    nanoseconds) of the last activity the client has. Empty or absent: none (an
    EventSource sends an empty one after an event without id)."""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_EVENT_ID_DIGITS:
        raise InvalidArgument(
            f"Invalid Last-Event-ID {raw!r}: pass the id of the last event received "
            "(an activity's createTime in decimal nanoseconds)."
        )
    return int(raw)


class EventStream(Response):
    """A ``text/event-stream`` response of the chunks ``events`` yields, until they end or
    the client leaves (whichever is first; the iterator is then closed, so its cleanup
    runs either way). A ``Response``, so FastAPI passes it through as it is."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.create_task(self._pump(send), name="openjules-sse")
        gone = asyncio.create_task(_disconnected(receive), name="openjules-sse-disconnect")
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await stop_tasks((pump, gone))
        if not gone.cancelled() and gone.done():
            return  # the client left: nobody to finish the response for
        # The events ended (or failed, already logged): end the body cleanly.
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        events = self.events
        try:
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Mid-stream nothing can be said to the client but the end; it reconnects
            # (with Last-Event-ID) and is answered properly, 503 included.
            log.warning("an event stream ended early: %r", exc)
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
