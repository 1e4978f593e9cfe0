"""HTTP/1.1 for the model's Chat Completions requests: kept-alive connections per origin,
shared by every session of a process.

Why not the ``openai`` SDK's httpx client: a hundred sessions at once make a model request
every few milliseconds, and the SDK's layers (request options, httpx's client, transport
and connection pool, the response's typed parsing) cost about 2.5 ms of CPU per request
in the process that runs the sessions, where writing the request and reading the answer
on an asyncio stream costs about 0.4 ms (``bench/model_calls.py``). Everything that process
spends holds the GIL against every other session's turn.

What a Chat Completions exchange needs, and only that: ``POST`` with a JSON body over
``http`` or ``https`` (certificates checked as httpx checks them: those ``SSL_CERT_FILE`` or
``SSL_CERT_DIR`` name, else certifi's bundle); answers sized by ``Content-Length``, chunked,
or ended by the server closing; ``1xx`` answers skipped; 307 and 308 followed; a proxy
from the environment (``https_proxy``, ``http_proxy``, ``all_proxy``, ``no_proxy``:
``CONNECT`` for https, the absolute URL for http). Time limits and retries are the
caller's (``engine.model``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import certifi

# The most connections kept idle per origin (more than this many requests at once open
# more; the extra ones close when done).
MAX_IDLE_PER_ORIGIN = 128
# Bytes of a status line and headers at most (a guard against a server gone wrong).
MAX_HEAD_BYTES = 256 * 1024
# Redirects followed at most, as httpx's default.
MAX_REDIRECTS = 20


class HttpConnectionError(Exception):
    """The request did not get an answer: no connection, or the connection broke."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    # Lower-case names; a repeated header's values joined with ", ".
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        """``host[:port]`` as a Host header names it (the port when not the default)."""
        default = 443 if self.scheme == "https" else 80
        return self._host if self.port == default else self.host_port

    @property
    def host_port(self) -> str:
        """``host:port`` (a CONNECT's target)."""
        return f"{self._host}:{self.port}"

    @property
    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


@dataclass(frozen=True)
class _Request:
    origin: _Origin
    target: str  # path and query
    rest: bytes  # the headers after the request line, and the body


# Answers that never have a body, whatever their headers say.
_BODILESS = frozenset({204, 304})


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    # Requests go in absolute form (an http URL through a proxy).
    absolute: bool = False

    def usable(self) -> bool:
        """Not closed by either side while it waited (a server that hung up has left the
        end of the stream to read)."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


def _tls_context() -> ssl.SSLContext:
    """As httpx verifies: the certificates ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` name, else
    certifi's bundle."""
    return _tls_context_of(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@cache
def _tls_context_of(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # Built once per bundle: loading one costs ~20 ms.
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return ssl.create_default_context(cafile=certifi.where())


class ModelHttp:
    """POSTs to model endpoints over kept-alive connections (one pool per origin)."""

    def __init__(self, *, max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN) -> None:
        self._max_idle = max_idle_per_origin
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        """The answer to ``POST url``; ``HttpConnectionError`` when none came. A kept
        connection that turns out to be closed is replaced once, before anything of the
        request could have been answered. A 307 or 308 (which keep the method and body) is
        followed, up to ``MAX_REDIRECTS`` times, as the SDK's httpx client follows them;
        the ``Authorization`` header only goes to the origin it was given for."""
        start = urlsplit(url)
        for _ in range(MAX_REDIRECTS):
            response = await self._post_once(url, body=body, headers=headers)
            location = response.headers.get("location")
            if response.status not in (307, 308) or not location:
                return response
            url = urljoin(url, location)
            moved = urlsplit(url)
            if (moved.scheme, moved.netloc) != (start.scheme, start.netloc):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        return await self._post_once(url, body=body, headers=headers)

    async def _post_once(
        self, url: str, *, body: bytes, headers: Mapping[str, str]
    ) -> HttpResponse:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpConnectionError(f"{url} is not an http or https URL")
        origin = _Origin(
            parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Encoded before a connection is taken: a header that is not latin-1 is refused
        # (ValueError) without costing a connection.
        lines = [f"Host: {origin.authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        request = _Request(
            origin=origin,
            target=target,
            rest=("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body,
        )
        pooled = self._pooled(origin)
        if pooled is not None:
            try:
                return await self._exchange(pooled, request)
            except _Unanswered:
                # The server closed it meanwhile: sent again on a new connection (as the
                # server may have read it before closing, a POST may arrive twice).
                pass
        connection = await self._connect(origin, parts)
        try:
            return await self._exchange(connection, request)
        except _Unanswered as unanswered:
            raise HttpConnectionError(str(unanswered)) from unanswered

    def _pooled(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _exchange(self, connection: _Connection, request: _Request) -> HttpResponse:
        origin = request.origin
        path = request.target
        if connection.absolute:
            path = f"{origin.scheme}://{origin.authority}{path}"
        head = f"POST {path} HTTP/1.1\r\n".encode("latin-1")
        answered = False
        try:
            connection.writer.write(head + request.rest)
            await connection.writer.drain()
            while True:
                status, response_headers, keep = await _read_head(connection.reader)
                answered = True
                if status >= 200:
                    break
                # 1xx (100 Continue and the like): the real answer follows.
            content = await _read_body(connection.reader, status, response_headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            connection.close()
            if not answered:
                raise _Unanswered(_describe(exc)) from exc
            raise HttpConnectionError(_describe(exc)) from exc
        except BaseException:
            connection.close()  # cancelled mid-exchange: the stream's state is unknown
            raise
        # An answer sized by its headers leaves the connection ready for the next request.
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        sized = chunked or "content-length" in response_headers or status in _BODILESS
        if keep and sized:
            self._keep(origin, connection)
        else:
            connection.close()
        return HttpResponse(status=status, headers=response_headers, body=content)

    def _keep(self, origin: _Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= self._max_idle:
            connection.close()
        else:
            idle.append(connection)

    async def _connect(self, origin: _Origin, parts: SplitResult) -> _Connection:
        proxy = _proxy_for(parts)
        tls = _tls_context() if origin.scheme == "https" else None
        try:
            if proxy is None:
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=tls, limit=MAX_HEAD_BYTES
                )
                return _Connection(reader, writer)
            if proxy.scheme != "http":
                raise HttpConnectionError(
                    f"the proxy {proxy.geturl()} is not an http:// proxy (the only kind used)"
                )
            reader, writer = await asyncio.open_connection(
                proxy.hostname, proxy.port or 80, limit=MAX_HEAD_BYTES
            )
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise HttpConnectionError(_describe(exc)) from exc
        if tls is None:
            return _Connection(reader, writer, absolute=True)
        try:
            await _tunnel(reader, writer, origin, proxy)
            await writer.start_tls(tls, server_hostname=origin.host)
        except BaseException as exc:
            writer.close()  # failed or cancelled (a time limit): the proxy's socket too
            if isinstance(exc, OSError | asyncio.IncompleteReadError | ValueError):
                raise HttpConnectionError(_describe(exc)) from exc
            raise
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


class _Unanswered(Exception):
    """The connection failed before any byte of an answer arrived."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the server closed the connection before its answer was complete"
    return str(exc) or type(exc).__name__


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    """The status, headers and whether the connection may be kept, of one answer."""
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/"):
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    return status, headers, keep


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
) -> bytes:
    if status in _BODILESS:
        return b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers, if any, up to the empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = headers.get("content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read()  # delimited by the server closing the connection


def _proxy_for(parts: SplitResult) -> SplitResult | None:
    """The proxy the environment names for this URL, if any."""
    host = parts.hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    found = proxies.get(parts.scheme) or proxies.get("all")
    if not found:
        return None
    proxy = urlsplit(found if "://" in found else f"http://{found}")
    return proxy if proxy.hostname else None


async def _tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    origin: _Origin,
    proxy: SplitResult,
) -> None:
    """``CONNECT`` through the proxy to ``origin``."""
    lines = [f"CONNECT {origin.host_port} HTTP/1.1", f"Host: {origin.host_port}"]
    if proxy.username is not None:
        credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        lines.append(f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    status, _headers, _keep = await _read_head(reader)
    if status != 200:
        writer.close()
        raise OSError(f"the proxy {proxy.hostname} refused to connect (HTTP {status})")
