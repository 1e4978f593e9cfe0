"""The error tree shared by the server (raised, rendered as Google's envelope) and clients.

Each class carries the HTTP code and the canonical ``google.rpc.Code`` name that the
Google JSON error envelope puts in ``error.status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

NOT_FOUND_MESSAGE = "Requested entity was not found."


@dataclass(frozen=True)
class FieldViolation:
    """One entry of ``google.rpc.BadRequest.fieldViolations`` (snake_case field path)."""

    field: str
    description: str


class APIError(Exception):
    """Base of every error the API reports; renders as ``{"error": {...}}``."""

    http_code: ClassVar[int] = 500
    status: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field_violations: list[FieldViolation] | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field_violations = list(field_violations or [])
        self.extra_details = list(details or [])
        # Sent as the Retry-After header (429 and 503: when trying again can succeed).
        self.retry_after_seconds = retry_after_seconds

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.http_code,
            "message": self.message,
            "status": self.status,
        }
        details = list(self.extra_details)
        if self.field_violations:
            details.insert(
                0,
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": v.field, "description": v.description}
                        for v in self.field_violations
                    ],
                },
            )
        if details:
            body["details"] = details
        return {"error": body}


class InvalidArgument(APIError):
    http_code = 400
    status = "INVALID_ARGUMENT"


class FailedPrecondition(APIError):
    http_code = 400
    status = "FAILED_PRECONDITION"


class Unauthenticated(APIError):
    http_code = 401
    status = "UNAUTHENTICATED"


class PermissionDenied(APIError):
    http_code = 403
    status = "PERMISSION_DENIED"


class NotFound(APIError):
    http_code = 404
    status = "NOT_FOUND"

    def __init__(self, message: str = NOT_FOUND_MESSAGE, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class MethodNotAllowed(APIError):
    http_code = 405
    status = "UNIMPLEMENTED"


class AlreadyExists(APIError):
    http_code = 409
    status = "ALREADY_EXISTS"


class ResourceExhausted(APIError):
    http_code = 429
    status = "RESOURCE_EXHAUSTED"


class Internal(APIError):
    http_code = 500
    status = "INTERNAL"


class Unavailable(APIError):
    http_code = 503
    status = "UNAVAILABLE"


_BY_STATUS: dict[str, type[APIError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        MethodNotAllowed,
        AlreadyExists,
        ResourceExhausted,
        Internal,
        Unavailable,
    )
}


# What an answer without the envelope (from a proxy or a load balancer in front of the
# server) most likely means, by its HTTP status; anything else is INTERNAL.
_BY_HTTP_CODE: dict[int, type[APIError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    429: ResourceExhausted,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_from_envelope(*, http_code: int, body: Any) -> APIError:
    """Rebuild the matching exception from a response body (used by clients)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _BY_HTTP_CODE.get(http_code, Internal)(
            f"HTTP {http_code} without a Google error envelope"
        )
    status = str(error.get("status", ""))
    cls = _BY_STATUS.get(status, APIError)
    if cls is FailedPrecondition and http_code != 400:
        cls = APIError
    exc = cls(str(error.get("message", "")), details=list(error.get("details") or []))
    return exc
