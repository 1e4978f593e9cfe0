"""JSON responses with an explicit Content-Length (some clients need it) and no re-encoding."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from openjules._types import WireModel

# How a method that answers ``{}`` documents its 200 (the ``responses=`` of its route).
EMPTY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": {}}}}
}

EMPTY_OBJECT = b"{}"


class JSONBytes(Response):
    media_type = "application/json"


def wire(model: WireModel, *, status_code: int = 200) -> JSONBytes:
    return JSONBytes(model.to_json(), status_code=status_code)


def empty() -> JSONBytes:
    """``{}``: what sendMessage, approvePlan and delete answer (clients call .json())."""
    return JSONBytes(EMPTY_OBJECT)


def list_body(*, key: str, items: list[str], next_page_token: str) -> JSONBytes:
    """A list response assembled from already-rendered item JSON; empty fields omitted."""
    return JSONBytes(list_json(key=key, items=items, next_page_token=next_page_token))


def list_objects(*, key: str, items: list[dict[str, Any]], next_page_token: str) -> bytes:
    """``list_json`` of items not yet rendered: one serializer call for the whole page
    (pydantic's, as the wire models use; compact, so the bytes are the same)."""
    body: dict[str, Any] = {}
    if items:
        body[key] = items
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return to_json(body)


def list_json(*, key: str, items: list[str], next_page_token: str) -> bytes:
    """The body of ``list_body``."""
    parts: list[str] = []
    if items:
        parts.append(f'"{key}":[' + ",".join(items) + "]")
    if next_page_token:
        parts.append(f'"nextPageToken":"{next_page_token}"')
    return ("{" + ",".join(parts) + "}").encode()
