"""What the SDK raises: the server's errors (the shared tree in ``openjules._errors``, rebuilt
from the Google error envelope) plus the two only a client can meet."""

from __future__ import annotations

from openjules._errors import APIError
from openjules._types import Session


class Unsupported(APIError):
    """The server does not offer a method the caller asked for: an openjules extension
    (cancel, pause, resume, streaming) called on a plain Jules server."""

    http_code = 501
    status = "UNIMPLEMENTED"


class WaitTimeout(TimeoutError):
    """``wait()`` gave up: the session did not reach one of the states waited for in time.
    ``session`` is how it was when the wait ended."""

    def __init__(self, message: str, *, session: Session) -> None:
        super().__init__(message)
        self.session = session
