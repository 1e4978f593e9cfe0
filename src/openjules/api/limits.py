"""What a request may ask: text the database can store, in fields of bounded length.

One check for every string a request brings: the path parameters, the query parameters
and every string and key of a JSON body, before any of them reaches the database, a
query or an error message. Neither database can store NUL (PostgreSQL refuses it in
text) or an unpaired UTF-16 surrogate (JSON may spell one, ``"\\ud800"``, but it is no
character and cannot be encoded as UTF-8), so both are refused alike on SQLite and
PostgreSQL, as 400 INVALID_ARGUMENT naming the field. The routers run
:func:`checked_request` before everything else, so no route can forget it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request

from openjules._errors import FieldViolation, InvalidArgument
from openjules.api.errors import BODY_FIELD_BY_ROUTE, snake_case
from openjules.api.state import AppState
from openjules.settings import Settings

# Ids, source names, branch names, timestamps: far longer than any real one.
MAX_NAME_CHARS = 1024
# How query parameters are named in field violations (snake_case, as Google does).
QUERY_FIELDS = {
    "pageToken": "page_token",
    "nextPageToken": "page_token",
    "createTime": "create_time",
}


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None. Never quotes the text itself: it may be
    what cannot be encoded."""
    nul = value.find("\x00")
    if nul >= 0:
        return f"contains a NUL character (U+0000) at offset {nul}"
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains an unpaired surrogate (U+{ord(value[exc.start]):04X}) at offset {exc.start}"
        )
    return None


def check_text(value: str, *, field: str, max_chars: int | None = None) -> str:
    """``value`` if it can be stored and is at most ``max_chars`` long; else 400
    INVALID_ARGUMENT naming ``field`` (a snake_case path such as ``session.prompt``)."""
    problem = text_problem(value)
    if problem is not None:
        reason = f"the text {problem}, which cannot be stored; send valid Unicode text"
        raise _invalid(field, reason)
    if max_chars is not None and len(value) > max_chars:
        reason = f"the text is {len(value)} characters long; the limit is {max_chars}"
        raise _invalid(field, reason)
    return value


def _invalid(field: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"Invalid value at '{field}': {reason}.",
        field_violations=[FieldViolation(field, reason[0].upper() + reason[1:] + ".")],
    )


def body_limits(settings: Settings) -> dict[str, int]:
    """The longest text each body field may hold (by snake_case path)."""
    return {
        "session.prompt": settings.max_prompt_chars,
        "session.title": settings.max_title_chars,
        "session.source_context.source": MAX_NAME_CHARS,
        "session.source_context.working_branch": MAX_NAME_CHARS,
        "session.source_context.github_repo_context.starting_branch": MAX_NAME_CHARS,
        # sessions.sendMessage
        "prompt": settings.max_prompt_chars,
    }


def query_limits(settings: Settings) -> dict[str, int]:
    return {
        "filter": settings.max_filter_chars,
        "page_token": settings.max_page_token_chars,
        "create_time": MAX_NAME_CHARS,
    }


def check_body(body: Any, *, prefix: str, limits: Mapping[str, int]) -> None:
    """Every string and key of a parsed JSON body (iteratively: bodies may nest deeply)."""
    pending: list[tuple[str, Any]] = [(prefix, body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            check_text(value, field=path or "request", max_chars=limits.get(path))
        elif isinstance(value, dict):
            for key, item in value.items():
                if text_problem(key) is not None:
                    raise _invalid(path or "request", f"a field name {text_problem(key)}")
                pending.append((_join(path, snake_case(key)), item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


async def checked_request(request: Request) -> None:
    """A router dependency: every text the request brings can be stored and is within
    its limit. Runs after the body is parsed and before it is validated."""
    settings = AppState.of(request).settings
    path_params = [v for v in request.path_params.values() if isinstance(v, str)]
    check_params(path_params, request.query_params.multi_items(), settings=settings)
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or not await request.body():
        return
    try:
        body = await request.json()  # parsed (and kept) by FastAPI already
    except ValueError:
        return  # not JSON: FastAPI reports it
    prefix = BODY_FIELD_BY_ROUTE.get(getattr(route, "name", ""), "")
    check_body(body, prefix=prefix, limits=body_limits(settings))


def check_params(
    path_params: Iterable[str], query: Iterable[tuple[str, str]], *, settings: Settings
) -> None:
    """The path and query parameters of a request (what ``checked_request`` checks first)."""
    for value in path_params:
        check_text(value, field="name", max_chars=MAX_NAME_CHARS)
    limits = query_limits(settings)
    for name, value in query:
        field = QUERY_FIELDS.get(name, name)
        check_text(value, field=field, max_chars=limits.get(field))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
