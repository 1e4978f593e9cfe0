"""Closed-loop HTTP/1.1 load: ``concurrency`` keep-alive connections, each sending requests
(GET, or POST with a pre-encoded body) back to back for a warm-up and then a measured
window, bounded by time and by request count.

The default client is a minimal asyncio one (a request is one pre-encoded write; a response
is its header block plus ``Content-Length`` bytes) so the load process stays cheap next to
the server process on a 2-core machine. ``httpx`` is available for comparison; it costs
several times more client CPU per request and so compresses the ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Protocol

import httpx

CLIENTS = ("raw", "httpx")


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    headers: dict[str, str]
    method: str = "GET"
    # Sent with every request (POST): encoded once, with its Content-Length.
    body: bytes = b""


@dataclass(frozen=True)
class LoadResult:
    requests: int  # completed in the measured window
    errors: int
    seconds: float  # length of the measured window
    first_error: str
    # CPU time this (load) process used during the whole run, warm-up included, and the
    # run's wall time: how much of the machine the client took from the server.
    client_cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_cores(self) -> float:
        """CPU cores the load client kept busy on average (1.0: one whole core)."""
        return self.client_cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class _Connection(Protocol):
    async def get(self) -> tuple[int, int]:
        """Send one request; return (status, body length)."""
        ...

    async def close(self) -> None: ...

    @property
    def error_body(self) -> str:
        """The start of the first response body that was not 200 ("" if none)."""
        ...


class _RawConnection:
    def __init__(self, target: Target) -> None:
        self.target = target
        lines = [f"{target.method} {target.path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
        lines += [f"{k}: {v}" for k, v in target.headers.items()]
        if target.body or target.method != "GET":
            lines += ["Content-Type: application/json", f"Content-Length: {len(target.body)}"]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.request = head + target.body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.error_body = ""  # of the first response that was not 200

    async def get(self) -> tuple[int, int]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.target.host, self.target.port
            )
        reader, writer = self.reader, self.writer
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            raise LoadError(f"response without Content-Length: {head[:200]!r}")
        start += len(b"\r\ncontent-length:")
        length = int(lower[start : lower.index(b"\r\n", start)])
        body = await reader.readexactly(length)
        if status != 200 and not self.error_body:
            self.error_body = body[:300].decode("utf-8", "replace")
        if b"\r\nconnection: close" in lower:
            await self.close()
        return status, length

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _HttpxConnection:
    def __init__(self, client: httpx.AsyncClient, target: Target) -> None:
        self.client = client
        self.url = f"http://{target.host}:{target.port}{target.path}"
        self.method = target.method
        self.body = target.body
        self.error_body = ""
        self.headers = dict(target.headers)
        if target.body:
            self.headers["Content-Type"] = "application/json"

    async def get(self) -> tuple[int, int]:
        response = await self.client.request(
            self.method, self.url, headers=self.headers, content=self.body or None
        )
        if response.status_code != 200 and not self.error_body:
            self.error_body = response.text[:300]
        return response.status_code, len(response.content)

    async def close(self) -> None:
        return None


async def run_load(
    target: Target,
    *,
    client: str = "raw",
    concurrency: int = 16,
    warmup: float = 1.0,
    seconds: float = 5.0,
    max_requests: int = 2_000_000,
) -> LoadResult:
    """Warm up, then count the 200 responses completed within ``seconds``."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; choose from {CLIENTS}")
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    counted = 0
    errors = 0
    first_error = ""

    async def worker(conn: _Connection) -> None:
        nonlocal counted, errors, first_error
        try:
            while counted + errors < max_requests:
                now = loop.time()
                if now >= stop:
                    return
                try:
                    status, _ = await conn.get()
                except (OSError, ValueError, asyncio.IncompleteReadError, LoadError) as exc:
                    status, first_error = 0, first_error or repr(exc)
                    await conn.close()
                done = loop.time()
                if start <= done <= stop:
                    if status == 200:
                        counted += 1
                    else:
                        errors += 1
                        first_error = first_error or f"HTTP {status} {conn.error_body}"
                elif status != 200:  # warm-up errors count too: the run is invalid
                    errors += 1
                    first_error = first_error or f"HTTP {status} (warm-up) {conn.error_body}"
        finally:
            await conn.close()

    http: httpx.AsyncClient | None = None
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(limits=limits, timeout=30.0)
    try:
        conns: list[_Connection] = [
            _HttpxConnection(http, target) if http is not None else _RawConnection(target)
            for _ in range(concurrency)
        ]
        began = time.perf_counter()
        cpu_began = time.process_time()
        # A hung server must not hang the benchmark: bound the whole run.
        try:
            async with asyncio.timeout(warmup + seconds + 30.0), asyncio.TaskGroup() as group:
                for conn in conns:
                    group.create_task(worker(conn))
        except TimeoutError:
            raise LoadError(f"no end after {warmup + seconds + 30.0:g} s: server hung?") from None
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
    finally:
        if http is not None:
            await http.aclose()
    # Stopped early by max_requests: count only the part of the window that ran.
    window = min(seconds, max(elapsed - warmup, 1e-9))
    return LoadResult(
        requests=counted,
        errors=errors,
        seconds=window,
        first_error=first_error,
        client_cpu_seconds=cpu,
        wall_seconds=elapsed,
    )
