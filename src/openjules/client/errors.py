"""What the SDK raises: the server's errors (the shared tree in ``openjules._errors``, rebuilt
from the Google error envelope) plus those only a client can meet."""

from __future__ import annotations

import httpx

from openjules._errors import APIError, Unavailable
from openjules._types import Session


class Unsupported(APIError):
    """The server does not offer a method the caller asked for: an openjules extension
    (cancel, pause, resume, streaming) called on a plain Jules server."""

    http_code = 501
    status = "UNIMPLEMENTED"


class ConnectionFailed(Unavailable):
    """No answer came: the server could not be reached, or the connection broke before it
    answered (after the retries the call allows). ``__cause__`` is httpx's error."""

    @classmethod
    def of(cls, exc: httpx.TransportError, *, server: str, sent: bool) -> ConnectionFailed:
        """``sent``: the request may have reached the server (a create or a message that
        was not retried may have happened)."""
        origin = server.removesuffix("/v1alpha")
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        verb = "cannot reach" if isinstance(exc, httpx.ConnectError) else "no answer from"
        message = f"{verb} the server at {origin} ({reason})"
        if sent:
            message += "; the request may have reached it: check before repeating it"
        return cls(message)


class WaitTimeout(TimeoutError):
    """``wait()`` gave up: the session did not reach one of the states waited for in time.
    ``session`` is how it was when the wait ended."""

    def __init__(self, message: str, *, session: Session) -> None:
        super().__init__(message)
        self.session = session
