"""``HttpFront``: a small HTTP/1.1 server that stands in front of another one, for the
test kit's fronts (``PlainJules``, ``FlakyHTTP``).

It speaks HTTP itself (h11 over asyncio, in a background thread with its own event loop)
rather than through uvicorn, because a front must be able to do what an ASGI app cannot:
drop a connection without answering, as a crashed load balancer does. Each request goes
to ``handle()``, which answers it, forwards it upstream unchanged (``forward()``: method,
path as sent, query, headers, body; the answer's status, headers and body streamed back
as they come, so event streams pass through), or drops the connection (``None``).
``stop()`` resets every open connection, event streams included, so it never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, unquote

import h11
import httpx

from openjules.server import bind
from openjules.testing.lifecycle import LoopThread

log = logging.getLogger("openjules.testing")

DEFAULT_WAIT_S = 30.0
CHUNK_BYTES = 65536
# Per connection, not forwarded (RFC 9110 §7.6.1); Host and the body's framing are the
# next hop's own.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}

R = TypeVar("R")


@dataclass(frozen=True)
class FrontRequest:
    method: str
    # The path as the client sent it (percent-encoding kept: ``%3A`` stays ``%3A``).
    raw_path: str
    # The same, decoded: what routes are matched on (``sessions/1:cancel``).
    path: str
    # The query string as sent, without the ``?``.
    query: str
    # In the order sent, names in lower case.
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


@dataclass(frozen=True)
class FrontResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A body, or its chunks as they come (sent chunked unless headers give its length).
    body: bytes | AsyncIterator[bytes] = b""


def text_response(status: int, text: str, *, media_type: str) -> FrontResponse:
    body = text.encode()
    headers = [("content-type", media_type), ("content-length", str(len(body)))]
    return FrontResponse(status, headers, body)


class HttpFront(LoopThread, Generic[R]):
    """Subclasses implement ``handle``; ``R`` is what they record of each request
    (``_record``), read back with ``requests`` and ``wait_for``."""

    def __init__(self, *, name: str) -> None:
        super().__init__(thread_name=name)
        self._name = name
        self._socket = bind("127.0.0.1", 0)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._http: httpx.AsyncClient | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._exchanges: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = threading.Condition()
        self._seen: list[R] = []

    async def handle(self, request: FrontRequest) -> FrontResponse | None:
        """The answer to ``request``, or None to drop the connection unanswered."""
        raise NotImplementedError

    # --- what was seen, from any thread ---------------------------------------------------

    def _record(self, item: R) -> None:
        with self._changed:
            self._seen.append(item)
            self._changed.notify_all()

    @property
    def requests(self) -> list[R]:
        with self._changed:
            return list(self._seen)

    def wait_for(
        self, condition: Callable[[list[R]], bool], *, timeout: float = DEFAULT_WAIT_S
    ) -> list[R]:
        """The requests so far, once ``condition`` holds for them; AssertionError (showing
        what did arrive) if it does not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self._seen)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self._name} saw {len(self._seen)}: {self._seen}")
                self._changed.wait(left)
            return list(self._seen)

    # --- start and stop, from any thread --------------------------------------------------

    def stop(self) -> None:
        super().stop()
        self._socket.close()

    # --- in the front's event loop ------------------------------------------------------

    async def _open(self) -> None:
        await self._listen()

    async def _shut(self) -> None:
        await self._close()

    async def _listen(self) -> None:
        # No pool limit: a test may hold several event streams open through the front.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        # No read timeout: an event stream may be quiet for long; stop() ends it anyway.
        # verify=False: the upstream is plain HTTP, so no certificates are worth loading
        # (that alone would make starting a front take ~100 ms).
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, read=None), limits=limits, verify=False
        )
        self._server = await asyncio.start_server(self._connection, sock=self._socket)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._exchanges):
            task.cancel()
        # The connections' own tasks end once their exchange has: wait for them, never
        # cancel them (Python 3.11's asyncio reports a cancelled one as unhandled).
        if self._connections:
            await asyncio.wait(list(self._connections))
        if self._http is not None:
            await self._http.aclose()
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        exchange = asyncio.create_task(self._exchange(reader, writer))
        self._connections.add(task)
        self._exchanges.add(exchange)
        self._writers.add(writer)
        try:
            await asyncio.wait([exchange])
            if not exchange.cancelled() and (error := exchange.exception()) is not None:
                # A bug of the front (its client sees a reset): said where a test shows it.
                log.error("%s failed on a request", self._name, exc_info=error)
        finally:
            self._writers.discard(writer)
            self._exchanges.discard(exchange)
            self._connections.discard(task)
            # A reset rather than a polite close: a dropped request reads as one.
            writer.transport.abort()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests and answers on one connection until either side ends it."""
        conn = h11.Connection(h11.SERVER)
        with contextlib.suppress(OSError, h11.ProtocolError, httpx.TransportError):
            # Any of these: the client or the upstream went away mid-message, so this
            # connection goes too.
            while (request := await _read_request(conn, reader)) is not None:
                answer = await self.handle(request)
                if answer is None:
                    return  # dropped: the connection is reset, nothing answered
                await _write_response(conn, writer, answer)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    async def forward(
        self, request: FrontRequest, *, upstream: str, query: str | None = None
    ) -> FrontResponse:
        """``request`` sent on to ``upstream`` (``http://host:port``, plain HTTP), with
        ``query`` instead of its own if given; the answer as it comes. 502 when upstream
        cannot be reached."""
        assert self._http is not None
        wanted = query if query is not None else request.query
        url = upstream.rstrip("/") + request.raw_path + (f"?{wanted}" if wanted else "")
        sent = [(k, v) for k, v in request.headers if k not in NOT_FORWARDED]
        outgoing = self._http.build_request(
            request.method, url, headers=sent, content=request.body or None
        )
        # httpx adds its own defaults (Accept-Encoding, User-Agent...): send only the client's.
        names = {k for k, _ in sent} | {"host", "content-length"}
        for name in [k for k in outgoing.headers if k.lower() not in names]:
            del outgoing.headers[name]
        try:
            answer = await self._http.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            return text_response(502, f"upstream unreachable: {exc!r}\n", media_type="text/plain")
        headers = [(k, v) for k, v in answer.headers.multi_items() if k not in HOP_BY_HOP]
        return FrontResponse(answer.status_code, headers, _relay(answer))


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream body as it arrives, unchanged (still compressed if it was)."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> FrontRequest | None:
    """The next request on the connection, or None once the client has closed it."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(CHUNK_BYTES))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            target = head.target.decode("ascii")
            raw_path, _, query = target.partition("?")
            return FrontRequest(
                method=head.method.decode("ascii"),
                raw_path=raw_path,
                path=unquote(raw_path),
                query=query,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers],
                body=bytes(body),
            )
        else:
            return None


async def _write_response(
    conn: h11.Connection, writer: asyncio.StreamWriter, answer: FrontResponse
) -> None:
    _send(conn, writer, h11.Response(status_code=answer.status, headers=answer.headers))
    if isinstance(answer.body, bytes):
        if answer.body:
            _send(conn, writer, h11.Data(data=answer.body))
    else:
        chunks = answer.body
        try:
            async for chunk in chunks:
                if chunk:
                    _send(conn, writer, h11.Data(data=chunk))
                    # Each chunk on its way at once: an event must not wait for the next.
                    await writer.drain()
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
    _send(conn, writer, h11.EndOfMessage())
    await writer.drain()


def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
