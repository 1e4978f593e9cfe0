"""``FlakyHTTP``: an HTTP proxy in front of a server that fails on cue, then passes
requests through. For tests of how clients ride out (or give up on) a failing server::

    with FlakyHTTP(upstream=server.url) as front:
        front.fail(503, times=2, retry_after=1)            # the next two requests
        front.fail(403, method="POST", path="/v1alpha/sessions")   # only a matching one
        front.fail(502, envelope=False)                    # a load balancer's HTML page
        front.drop(method="GET")                           # the connection reset, unanswered
        client = Client(base_url=front.url, api_key=key)
        ...
        front.tries(method="GET", path=f"/v1alpha/sessions/{sid}")   # how often it was asked

Failures are used in the order they were given: a request meets the first one that
matches it and has tries left; a request no failure matches is forwarded unchanged, and
its answer (event streams included) comes back unchanged. A failure is answered with
Google's error envelope (``{"error": {"code", "message", "status"}}``), the canonical
status and message for its HTTP code unless told otherwise, and ``Retry-After`` if
given. Every request is recorded (``requests``), however it was answered.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from enum import StrEnum

from openjules._errors import (
    AlreadyExists,
    APIError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from openjules.testing.http_front import FrontRequest, FrontResponse, HttpFront, text_response

_CLASSES: tuple[type[APIError], ...] = (
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    ResourceExhausted,
    Internal,
    Unavailable,
)
# The google.rpc status Google sends with each HTTP code (400 also means
# FAILED_PRECONDITION; say so with ``google_status``).
STATUS_BY_CODE: dict[int, str] = {cls.http_code: cls.status for cls in _CLASSES} | {
    502: Unavailable.status,
    504: "DEADLINE_EXCEEDED",
}
# Google's canonical messages for them.
MESSAGE_BY_STATUS: dict[str, str] = {
    InvalidArgument.status: "Request contains an invalid argument.",
    FailedPrecondition.status: "Precondition check failed.",
    Unauthenticated.status: "Request had invalid authentication credentials.",
    PermissionDenied.status: "The caller does not have permission",
    NotFound.status: "Requested entity was not found.",
    AlreadyExists.status: "Requested entity already exists",
    ResourceExhausted.status: "Resource has been exhausted (e.g. check quota).",
    Internal.status: "Internal error encountered.",
    Unavailable.status: "The service is currently unavailable.",
    "DEADLINE_EXCEEDED": "The request timed out.",
}


class TryOutcome(StrEnum):
    FORWARDED = "forwarded"  # passed to the server; its answer passed back
    FAILED = "failed"  # answered with a scripted error, never reaching the server
    DROPPED = "dropped"  # the connection reset without an answer


@dataclass(frozen=True)
class Failure:
    """What a scripted failure answers; ``status`` None: the connection is dropped."""

    status: int | None
    message: str = ""
    google_status: str = ""
    retry_after: int | None = None
    envelope: bool = True

    def response(self) -> FrontResponse:
        assert self.status is not None
        headers = [] if self.retry_after is None else [("retry-after", str(self.retry_after))]
        if not self.envelope:
            # What a load balancer or a reverse proxy says of a server behind it.
            page = f"<html><body><h1>{self.status} {self.message}</h1></body></html>\n"
            answer = text_response(self.status, page, media_type="text/html")
        else:
            body = {
                "error": {
                    "code": self.status,
                    "message": self.message,
                    "status": self.google_status,
                }
            }
            answer = text_response(self.status, json.dumps(body), media_type="application/json")
        return FrontResponse(answer.status, answer.headers + headers, answer.body)


@dataclass
class _Rule:
    failure: Failure
    times: int
    method: str | None
    path: str | None

    def matches(self, request: FrontRequest) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method == request.method)
            and (self.path is None or self.path == request.path)
        )


@dataclass(frozen=True)
class TriedRequest:
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    outcome: TryOutcome
    # The status answered (the server's when forwarded); None when dropped.
    status: int | None


class FlakyHTTP(HttpFront[TriedRequest]):
    def __init__(self, *, upstream: str) -> None:
        super().__init__(name="flaky-http")
        self.upstream = upstream
        self.api = f"{self.url}/v1alpha"
        self._rules_lock = threading.Lock()
        self._rules: list[_Rule] = []

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        message: str | None = None,
        google_status: str | None = None,
        retry_after: int | None = None,
        envelope: bool = True,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``method`` to ``path``, the decoded path
        such as ``/v1alpha/sessions/123:approvePlan``, if given) with ``status``."""
        grpc_status = google_status or STATUS_BY_CODE.get(status, "UNKNOWN")
        text = message if message is not None else MESSAGE_BY_STATUS.get(grpc_status, "Error")
        failure = Failure(status, text, grpc_status, retry_after, envelope)
        self._add(_Rule(failure, times, method, path))

    def drop(self, *, times: int = 1, method: str | None = None, path: str | None = None) -> None:
        """Reset the connection of the next ``times`` (matching) requests once they have
        arrived, without an answer: the server may or may not have acted on them."""
        self._add(_Rule(Failure(None), times, method, path))

    def clear(self) -> None:
        """Forget every failure not yet used: from now on, everything passes."""
        with self._rules_lock:
            self._rules.clear()

    def tries(self, *, method: str | None = None, path: str | None = None) -> int:
        """How many requests (of ``method`` to ``path``, if given) arrived."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        )

    def _add(self, rule: _Rule) -> None:
        with self._rules_lock:
            self._rules.append(rule)

    def _failure_for(self, request: FrontRequest) -> Failure | None:
        with self._rules_lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.times -= 1
                    return rule.failure
        return None

    async def handle(self, request: FrontRequest) -> FrontResponse | None:
        failure = self._failure_for(request)
        if failure is None:
            answer = await self.forward(request, upstream=self.upstream)
            outcome = TryOutcome.FORWARDED
        elif failure.status is None:
            answer, outcome = None, TryOutcome.DROPPED
        else:
            answer, outcome = failure.response(), TryOutcome.FAILED
        self._record(
            TriedRequest(
                method=request.method,
                path=request.path,
                params=request.params,
                headers=dict(request.headers),
                outcome=outcome,
                status=None if answer is None else answer.status,
            )
        )
        return answer
