"""``error_from_envelope`` (kept for the Python SDK): every error the server renders comes
back as the same exception, with its message and details."""

from __future__ import annotations

import pytest

from openjules._errors import (
    AlreadyExists,
    APIError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_from_envelope,
)

RENDERED = [
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
]


@pytest.mark.parametrize("cls", RENDERED, ids=lambda c: c.__name__)
def test_a_rendered_error_comes_back_as_the_same_exception(cls: type[APIError]) -> None:
    sent = cls(f"{cls.__name__} happened", details=[{"@type": "x", "reason": "because"}])
    back = error_from_envelope(http_code=sent.http_code, body=sent.envelope())
    assert type(back) is cls
    assert back.message == f"{cls.__name__} happened"
    assert back.envelope() == sent.envelope()


def test_field_violations_survive_as_details() -> None:
    sent = InvalidArgument(
        "The prompt is required.",
        field_violations=[FieldViolation("session.prompt", "The prompt must not be empty.")],
    )
    back = error_from_envelope(http_code=400, body=sent.envelope())
    assert isinstance(back, InvalidArgument)
    assert back.envelope() == sent.envelope()


@pytest.mark.parametrize("body", [None, "oops", {"error": "text"}, {"message": "no envelope"}])
def test_a_body_without_an_envelope_is_an_internal_error_naming_the_code(body: object) -> None:
    back = error_from_envelope(http_code=500, body=body)
    assert isinstance(back, Internal)
    assert "500" in back.message


@pytest.mark.parametrize(
    ("http_code", "expected"),
    [
        (502, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
        (429, ResourceExhausted),
        (404, NotFound),
        (401, Unauthenticated),
        (418, Internal),
    ],
)
def test_a_proxy_answer_without_an_envelope_is_told_by_its_http_status(
    http_code: int, expected: type[APIError]
) -> None:
    """A load balancer's 503 page is retried like the server's own 503 (the SDK's rule)."""
    back = error_from_envelope(http_code=http_code, body="<html>Service Unavailable</html>")
    assert type(back) is expected
    assert str(http_code) in back.message


def test_an_unknown_status_is_a_plain_api_error() -> None:
    body = {"error": {"code": 418, "message": "teapot", "status": "TEAPOT"}}
    back = error_from_envelope(http_code=418, body=body)
    assert type(back) is APIError
    assert back.message == "teapot"
