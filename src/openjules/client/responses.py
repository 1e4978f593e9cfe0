"""Reading an answer: the parsed result, or the error the Google envelope describes."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx

from openjules._errors import APIError, error_from_envelope
from openjules.client.calls import Call
from openjules.client.errors import Unsupported

T = TypeVar("T")

JSON_MEDIA_TYPE = "application/json"
EVENT_STREAM_MEDIA_TYPE = "text/event-stream"
# Statuses a server (or a proxy before it) uses to say "no such method" or "not here".
NO_SUCH_METHOD_STATUSES = frozenset({404, 405, 501})


def _json_body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else {}
    except ValueError:
        return None


def _has_envelope(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def error_of(call: Call[Any], response: httpx.Response, *, server: str) -> APIError:
    """The exception for a failed answer. An extension method the server does not route
    (an answer without Google's envelope, or UNIMPLEMENTED) is ``Unsupported``, naming it."""
    body = _json_body(response)
    if (
        call.extension
        and response.status_code in NO_SUCH_METHOD_STATUSES
        and (not _has_envelope(body) or body["error"].get("status") == "UNIMPLEMENTED")
    ):
        return Unsupported(
            f"{call.extension} is an openjules extension of the Jules API; "
            f"the server at {server} does not offer it."
        )
    error = error_from_envelope(http_code=response.status_code, body=body)
    retry_after = response.headers.get("retry-after", "")
    if retry_after.isdigit():
        error.retry_after_seconds = int(retry_after)
    return error


def result_of(call: Call[T], response: httpx.Response, *, server: str) -> T:
    if response.status_code >= 400:
        raise error_of(call, response, server=server)
    body = _json_body(response)
    if body is None:
        raise APIError(
            f"{call.summary}: the server at {server} answered HTTP {response.status_code} "
            "with a body that is not JSON"
        )
    return call.parse(body)


def is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == EVENT_STREAM_MEDIA_TYPE
