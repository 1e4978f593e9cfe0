"""uvicorn's h11 protocol with what a server reachable by anyone with a key needs: a time
limit on reading each request's headers and body, a cap on open connections with a quick
503 beyond it, and accept errors logged at a bounded rate.

uvicorn has ``timeout_keep_alive`` (idle time *after* a response) but nothing bounds how
long a client may take to send a request: a connection that sends half a request line and
then nothing is held until the client goes away, so a few thousand of them exhaust the
process's descriptors. Here every connection has a deadline for its request headers,
counted from when it connects (or from the previous response), and then one for its body.

At ``max_connections`` a new connection takes the place of the one that has waited
longest without sending a request (a new one, or one idle between requests): clients that
trickle headers cannot keep out one that sends a request at once. When every connection
is in the middle of a request, a new one is still accepted (a refused ``connect()`` tells
a client nothing), answered ``503 UNAVAILABLE`` with ``Retry-After`` as soon as its
request headers arrive, and closed; it gets a short deadline for those headers, and
beyond a hard ceiling a connection is closed at once, so descriptors stay bounded
whatever clients do.

A connection in the middle of a response, an event stream (``alt=sse``) open for hours
included, is neither waiting for a request nor idle: no deadline runs and it is never
the one evicted.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

from openjules._errors import Unavailable

logger = logging.getLogger("openjules.http")

# The cap when none is configured: at most this many, and at most half the descriptors
# (the rest are for the database, the engine's git and sandbox processes, log files).
DEFAULT_MAX_CONNECTIONS = 10_000
# Connections beyond the cap still waiting to be told 503: at most this share of the cap
# (and at least OVERFLOW_MIN); beyond that a new connection is closed without an answer.
OVERFLOW_SHARE = 0.1
OVERFLOW_MIN = 64
# How long a connection beyond the cap may take to send the request it is refused.
REFUSED_HEADER_SECONDS = 5.0
# Retry-After of the 503: slots free as soon as any connection ends.
REFUSED_RETRY_AFTER_SECONDS = 1
# At shutdown, a response still in flight whose client has not read what was sent for
# this long is cut (uvicorn would otherwise wait for it forever).
SHUTDOWN_GRACE_SECONDS = 5.0
# At most one line per this many seconds for each kind of repeated network error.
LOG_INTERVAL_SECONDS = 10.0
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @property
    def ceiling(self) -> int:
        """Open connections (served and refused) beyond which one is closed at once."""
        return self.max_connections + max(OVERFLOW_MIN, int(self.max_connections * OVERFLOW_SHARE))


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the default soft limit, often
    1024, is far below what a server holding many connections needs); returns the soft
    limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS * 2
    # An unlimited hard limit (macOS) cannot be the soft one; leave it.
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


def default_max_connections(open_files_limit: int) -> int:
    return max(1, min(DEFAULT_MAX_CONNECTIONS, open_files_limit // 2))


class RateLimitedLog:
    """Log repeated events as one line per ``interval`` seconds per key, counting the rest
    (under a flood of failing accepts, asyncio would write one traceback per attempt)."""

    def __init__(self, *, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed and last is not None:
            message += f" ({suppressed} more like this in the last {now - last:.0f} s)"
        logger.warning(message)


def install_accept_error_handler(loop: asyncio.AbstractEventLoop, log: RateLimitedLog) -> None:
    """Route the loop's reports of running out of descriptors or memory (``socket.accept()
    out of system resource`` and the like) through ``log``; everything else goes where it
    went before."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            log.warning(f"resource:{exc.errno}", f"{context.get('message', 'error')}: {exc}")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def _refusal_body() -> tuple[bytes, list[tuple[bytes, bytes]]]:
    error = Unavailable(
        "The server has too many open connections; try again shortly.",
        retry_after_seconds=REFUSED_RETRY_AFTER_SECONDS,
    )
    body = json.dumps(error.envelope()).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(error.retry_after_seconds).encode()),
        (b"connection", b"close"),
    ]
    return body, headers


_REFUSAL_BODY, _REFUSAL_HEADERS = _refusal_body()


async def _refuse(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The ASGI app answering a connection beyond the cap."""
    await send({"type": "http.response.start", "status": 503, "headers": _REFUSAL_HEADERS})
    await send({"type": "http.response.body", "body": _REFUSAL_BODY, "more_body": False})


class _Pool:
    """The connections one server serves: how many, and those waiting for request headers
    (new or idle between requests), oldest first: the ones to close when a new one needs
    the place."""

    def __init__(self) -> None:
        self.served = 0
        self.waiting: dict[LimitedH11Protocol, None] = {}  # insertion order: oldest first


class _ClientNoise:
    """uvicorn's per-connection logger, with its warnings rate limited: they report what a
    client sent ("Invalid HTTP request received.", an unsupported upgrade), which any
    client can repeat as fast as it can connect."""

    def __init__(self, logger: logging.Logger, log: RateLimitedLog) -> None:
        self._logger = logger
        self._log = log

    def warning(self, message: str, *args: Any, **_kwargs: Any) -> None:
        self._log.warning(f"client:{message}", message % args if args else message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class LimitedH11Protocol(H11Protocol):
    """One connection. Use ``protocol_class(limits)``: it binds the limits and a pool of
    connections to one server."""

    limits: ClassVar[ConnectionLimits]
    pool: ClassVar[_Pool]
    log: ClassVar[RateLimitedLog]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _ClientNoise(self.logger, self.log)  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: Callable[[], None] | None = None
        self._served = False  # counted in ``pool.served``
        self._header_seconds = self.limits.header_timeout_seconds

    # The connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        pool, limit = self.pool, self.limits.max_connections
        if pool.served >= limit and pool.waiting:
            # Full, but some connection has not even sent a request: it is the one to go
            # (a client trickling headers must not keep out one that sends a request now).
            self.log.warning(
                "evict",
                f"connection limit of {limit} reached; closing connections that have "
                "waited longest without sending a request",
            )
            next(iter(pool.waiting))._evict()
        if pool.served < limit:
            self._served = True
            pool.served += 1
        elif len(self.connections) > self.limits.ceiling:
            self.log.warning(
                "ceiling", f"{len(self.connections) - 1} connections open; closing new ones"
            )
            transport.abort()
            return
        else:
            # Every served connection is in the middle of a request: say so, briefly.
            self.log.warning(
                "cap", f"connection limit of {limit} reached; answering new connections 503"
            )
            self.app = _refuse
            self._header_seconds = min(self._header_seconds, REFUSED_HEADER_SECONDS)
        self._arm(self._header_seconds, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server is shutting down: uvicorn lets a response in flight finish (an
        event stream is ended by the app) and waits for it. One whose client stopped
        reading would never finish, so it is cut after a grace period."""
        super().shutdown()
        if self.cycle is not None and not self.cycle.response_complete:
            self.loop.call_later(SHUTDOWN_GRACE_SECONDS, self._cut_if_stalled)

    def _cut_if_stalled(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        if self.flow.write_paused:  # the client is not taking what is sent
            self.transport.abort()
        else:
            self.loop.call_later(SHUTDOWN_GRACE_SECONDS, self._cut_if_stalled)

    def _release(self) -> None:
        if self._served:
            self._served = False
            self.pool.served -= 1

    def _evict(self) -> None:
        self._disarm()
        self._release()  # now, not when the close completes: the place is the new one's
        self._close()

    # Where the deadlines start and stop: after any input is parsed, h11's state of the
    # client says whether its request headers or its body are still to come.

    def handle_events(self) -> None:
        super().handle_events()
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start the next request (pipelining)
        self._follow_request()

    def _follow_request(self) -> None:
        if self.transport is None or self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Waiting for headers: counted from the connection or the previous response.
            if self._deadline_for != self._header_timed_out:
                self._arm(self._header_seconds, self._header_timed_out)
        elif state is h11.SEND_BODY:
            if self._deadline_for != self._body_timed_out:
                self._arm(self.limits.body_timeout_seconds, self._body_timed_out)
        else:
            self._disarm()

    # Deadlines --------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)
        self._deadline_for = callback
        if callback == self._header_timed_out and self._served:
            self.pool.waiting[self] = None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_for = None
        self.pool.waiting.pop(self, None)

    def _header_timed_out(self) -> None:
        self._disarm()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._close()

    def _body_timed_out(self) -> None:
        self._disarm()
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The app has not taken what was read (uvicorn stops reading then); the client
            # is not the one stalling, so wait again.
            self._arm(self.limits.body_timeout_seconds, self._body_timed_out)
            return
        self._close()

    def _close(self) -> None:
        # No 408: h11 cannot answer a request it has not received, and a stalled body's
        # handler is already answering (it sees the disconnect).
        self._unset_keepalive_if_required()
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    """The protocol class for one server (uvicorn's ``http=``): ``limits`` and the pool of
    its connections, shared by its connections and no other server's."""
    return type(
        "LimitedH11Protocol",
        (LimitedH11Protocol,),
        {"limits": limits, "pool": _Pool(), "log": RateLimitedLog()},
    )
