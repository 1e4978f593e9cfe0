"""Watching an SDK stream from a test: ``Collector`` reads it in a thread of its own while
the test acts; ``TappedProxy`` is a ``TcpProxy`` that also keeps the requests clients sent
through it, to see the headers a reconnect carried on the wire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from openjules._types import Activity
from openjules.testing import TcpProxy

WAIT_S = 60.0
HEAD_END = b"\r\n\r\n"


class Collector:
    """``Collector(jules.stream_activities(...))``: every activity the stream yields, read
    in a daemon thread; ``wait_for(n)`` until n have come, ``join()`` until it ended.
    An exception the stream raised is raised again by both."""

    def __init__(self, activities: Iterator[Activity]) -> None:
        self._activities = activities
        self._received: list[Activity] = []
        self._changed = threading.Condition()
        self._ended = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="sdk-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for activity in self._activities:
                with self._changed:
                    self._received.append(activity)
                    self._changed.notify_all()
        except BaseException as exc:  # handed to the test's thread
            self._error = exc
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    @property
    def received(self) -> list[Activity]:
        with self._changed:
            return list(self._received)

    def wait_for(self, count: int, *, seconds: float = WAIT_S) -> list[Activity]:
        """The activities once at least ``count`` have come."""
        return self._wait(lambda: len(self._received) >= count, f"{count} activities", seconds)

    def join(self, *, seconds: float = WAIT_S) -> list[Activity]:
        """Every activity, once the stream has ended."""
        return self._wait(lambda: self._ended, "the end of the stream", seconds)

    def _wait(self, done: Callable[[], bool], what: str, seconds: float) -> list[Activity]:
        deadline = time.monotonic() + seconds
        with self._changed:
            while not done() and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"waited {seconds} s for {what}; the stream yielded "
                        f"{len(self._received)} activities"
                    )
                self._changed.wait(left)
            if self._error is not None:
                raise self._error
            if not done():
                raise AssertionError(
                    f"the stream ended after {len(self._received)} activities, "
                    f"before {what}: {[a.id for a in self._received]}"
                )
            return list(self._received)


@dataclass(frozen=True)
class RequestHead:
    """An HTTP/1.1 request as a client sent it: its request line and headers (names in
    lower case)."""

    line: str
    headers: dict[str, str]

    @property
    def target(self) -> str:
        return self.line.split(" ")[1]

    def is_stream_of(self, path: str) -> bool:
        """Whether this asks for ``path`` (``/v1alpha/...``) as Server-Sent Events."""
        target_path, _, query = self.target.partition("?")
        return target_path == path and "alt=sse" in query.split("&")


def request_heads(sent: bytes) -> list[RequestHead]:
    """The requests in the bytes a client sent on one connection (bodies skipped by their
    Content-Length, as httpx always gives one)."""
    heads: list[RequestHead] = []
    rest = sent
    while (end := rest.find(HEAD_END)) >= 0:
        line, *fields = rest[:end].decode("latin-1").split("\r\n")
        headers = {}
        for header in fields:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        heads.append(RequestHead(line=line, headers=headers))
        rest = rest[end + len(HEAD_END) + int(headers.get("content-length", "0")) :]
    return heads


@dataclass
class _Connection:
    """What a client sent on one connection, and whether it still holds it open (it has
    neither closed nor reset its end: the server's end may take longer to go)."""

    sent: bytearray = field(default_factory=bytearray)
    open: bool = True


class _Tap(asyncio.StreamReader):
    """A client's end of a proxied connection, noting what was read from it."""

    def __init__(self, inner: asyncio.StreamReader, connection: _Connection) -> None:
        super().__init__()
        self._inner = inner
        self._connection = connection

    async def read(self, n: int = -1) -> bytes:
        try:
            data = await self._inner.read(n)
        except OSError:
            self._connection.open = False
            raise
        if not data:
            self._connection.open = False
        self._connection.sent.extend(data)
        return data


class TappedProxy(TcpProxy):
    """A ``TcpProxy`` that keeps what clients sent through it: ``requests()`` (connection
    after connection, complete request heads only) and ``open_streams(path)``."""

    def __init__(self, *, target_port: int) -> None:
        super().__init__(target_port=target_port)
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection()
        with self._lock:
            self._connections.append(connection)
        try:
            await super()._forward(_Tap(reader, connection), writer)
        finally:
            connection.open = False

    def _snapshot(self) -> list[tuple[list[RequestHead], bool]]:
        with self._lock:
            connections = [(bytes(c.sent), c.open) for c in self._connections]
        return [(request_heads(sent), is_open) for sent, is_open in connections]

    def requests(self) -> list[RequestHead]:
        return [head for heads, _ in self._snapshot() for head in heads]

    def streams(self, path: str) -> list[RequestHead]:
        """The streaming requests (``alt=sse``) for ``path`` (``/v1alpha/...``)."""
        return [r for r in self.requests() if r.is_stream_of(path)]

    def open_streams(self, path: str) -> int:
        """How many connections a client still holds open whose last request streams
        ``path``."""
        return sum(
            1
            for heads, is_open in self._snapshot()
            if is_open and heads and heads[-1].is_stream_of(path)
        )
