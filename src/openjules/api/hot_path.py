"""The API's most frequent requests, served without the framework's per-request work.

Every SDK, CLI and browser tab of every running session polls ``GET sessions/{id}`` and
its activities. Through FastAPI each such request passes nine middleware layers, a
linear route match over every route of the API and the web app, dependency resolution
and a Response object: several times the cost of the read itself. Here a plain
``GET`` of ``/healthz``, ``/v1alpha/sessions``, ``/v1alpha/sessions/{id}`` or
``/v1alpha/sessions/{id}/activities`` is answered directly, by the same functions the
routes call and with the same checks in the same order (the text of every parameter,
the API key and its rate limit, then the route's own), the same errors (Google's
envelope, 503 for a database outage) and the same headers (CORS included).

Anything out of the ordinary takes the full path and gets exactly what it did before:
another method or path, a request with a body, ``alt=`` (streams), a parameter these
routes do not take, a ``root_path``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from openjules._errors import APIError
from openjules._types import CreateSessionRequest
from openjules.api import pagination
from openjules.api.auth import authenticate
from openjules.api.errors import BODY_FIELD_BY_ROUTE, envelope_response, error_for, retry_headers
from openjules.api.limits import body_limits, check_body, check_params
from openjules.api.routes_activities import activities_page
from openjules.api.routes_sessions import new_session_json, session_json, sessions_page
from openjules.api.state import AppState
from openjules.settings import Settings

SESSIONS = "/v1alpha/sessions"
SESSION_PREFIX = SESSIONS + "/"
ACTIVITIES_SUFFIX = "/activities"
HEALTH_BODY = b'{"status":"ok"}'
LIST_PARAMS = frozenset({"pageSize", "pageToken", "nextPageToken", "filter", "key"})
ACTIVITY_LIST_PARAMS = LIST_PARAMS | {"createTime"}
SESSION_PARAMS = frozenset({"key"})
JSON_TYPE = (b"content-type", b"application/json")
# What the CORS middleware adds to every answer (allow_origins=["*"], no credentials).
VARY_ORIGIN = (b"vary", b"Origin")
ALLOW_ANY_ORIGIN = (b"access-control-allow-origin", b"*")

CREATE_BODY_FIELD = BODY_FIELD_BY_ROUTE["create_session"]
Handler = Callable[["_Request"], Awaitable[bytes]]


class _Request:
    """What the hot routes read of a request."""

    __slots__ = ("api_key", "path_param", "query")

    def __init__(self, *, api_key: str | None, path_param: str, query: dict[str, str]) -> None:
        self.api_key = api_key
        self.path_param = path_param
        self.query = query

    def list_query(self) -> pagination.ListQuery:
        q = self.query
        return pagination.ListQuery(
            page_size=q.get("pageSize"),
            page_token=q.get("pageToken") or q.get("nextPageToken") or None,
            filter=q.get("filter"),
        )


class HotPath:
    def __init__(self, state: AppState) -> None:
        self.state = state

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request if it is one of the hot ones (None); else nothing is sent,
        and what to receive the request from on the full path is returned."""
        if scope.get("root_path"):
            return receive
        if scope["method"] == "POST":
            if scope["path"] == SESSIONS:
                return await self._create(scope, receive, send)
            return receive
        if scope["method"] != "GET" or not await self._get(scope, receive, send):
            return receive
        return None

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> bool:
        path: str = scope["path"]
        if path == "/healthz":
            route: Handler | None = None
            allowed: frozenset[str] = frozenset()
            param = ""
        elif path == SESSIONS:
            route, allowed, param = self._sessions, LIST_PARAMS, ""
        elif path.startswith(SESSION_PREFIX):
            rest = path[len(SESSION_PREFIX) :]
            if rest.endswith(ACTIVITIES_SUFFIX):
                rest = rest[: -len(ACTIVITIES_SUFFIX)]
                route, allowed = self._activities, ACTIVITY_LIST_PARAMS
            else:
                route, allowed = self._session, SESSION_PARAMS
            if not rest or "/" in rest:
                return False
            param = rest
        else:
            return False
        api_key, origin, length, chunked = _heads(scope)
        if length is not None or chunked:  # a body: the full path applies its size limit
            return False
        items = _query_items(scope["query_string"])
        if any(name not in allowed for name, _ in items):
            return False
        if route is None:
            await _send(send, 200, HEALTH_BODY, origin=origin)
            return True
        query = dict(items)  # the last of a repeated parameter, as the routes take it
        request = _Request(api_key=api_key or query.get("key"), path_param=param, query=query)
        try:
            check_params((param,) if param else (), items, settings=self.state.settings)
            body = await route(request)
        except Exception as exc:
            await _error(exc, scope, receive, send, origin=origin)
            return True
        await _send(send, 200, body, origin=origin)
        return True

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """``sessions.create`` when the request is an ordinary one: a declared body within
        the size limit that is a JSON object of valid text and a valid CreateSessionRequest.
        Anything else goes to the full path, the body read so far replayed to it, before
        the key is looked at (so it is counted once)."""
        api_key, origin, length, chunked = _heads(scope)
        if chunked:
            return receive
        items = _query_items(scope["query_string"])
        if not 0 < (length or 0) <= self.state.settings.max_request_bytes or any(
            name != "key" for name, _ in items
        ):
            return receive
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return _replaying(messages, receive)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = _parsed_create(b"".join(chunks), items, settings=self.state.settings)
        if request is None:
            return _replaying(messages, receive)
        try:
            user = await authenticate(self.state, api_key or dict(items).get("key"))
            body = await new_session_json(self.state, user=user, body=request)
        except Exception as exc:
            await _error(exc, scope, receive, send, origin=origin)
            return None
        await _send(send, 200, body, origin=origin)
        return None

    async def _session(self, request: _Request) -> bytes:
        user = await authenticate(self.state, request.api_key)
        return await session_json(self.state, user=user, session_id=request.path_param)

    async def _sessions(self, request: _Request) -> bytes:
        user = await authenticate(self.state, request.api_key)
        return await sessions_page(self.state, user=user, query=request.list_query())

    async def _activities(self, request: _Request) -> bytes:
        user = await authenticate(self.state, request.api_key)
        return await activities_page(
            self.state,
            user=user,
            session_id=request.path_param,
            query=request.list_query(),
            create_time=request.query.get("createTime"),
        )


def _parsed_create(
    raw: bytes, query: list[tuple[str, str]], *, settings: Settings
) -> CreateSessionRequest | None:
    """The request of a create that passes every check the full path makes before it
    looks at the key; None for any other (the full path answers it)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    try:
        check_params((), query, settings=settings)
        check_body(body, prefix=CREATE_BODY_FIELD, limits=body_limits(settings))
        return CreateSessionRequest.model_validate(body)
    except (APIError, ValidationError):
        return None


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive``, after the ``messages`` already taken from it."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _error(
    exc: Exception, scope: Scope, receive: Receive, send: Send, *, origin: bool
) -> None:
    if isinstance(exc, APIError):
        # Inside the CORS middleware on the full path: its headers are added.
        response = envelope_response(exc, headers=retry_headers(exc))
        await response(scope, receive, _with_cors(send) if origin else _vary(send))
        return
    # The full path's ErrorBoundary, outside the CORS middleware, answers these.
    error = error_for(scope, exc)
    await envelope_response(error, headers=retry_headers(error))(scope, receive, send)


def _heads(scope: Scope) -> tuple[str | None, bool, int | None, bool]:
    """What the hot routes read of the headers: the API key (the first, as the routes read
    it), whether there is an Origin, the Content-Length (None: none; -1: not a number),
    and whether the body is chunked."""
    api_key: str | None = None
    origin = chunked = False
    length: int | None = None
    for name, value in scope["headers"]:
        if name == b"x-goog-api-key":
            if api_key is None:
                api_key = value.decode("latin-1")
        elif name == b"origin":
            origin = True
        elif name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"transfer-encoding":
            chunked = True
    return api_key, origin, length, chunked


def _query_items(raw: bytes) -> list[tuple[str, str]]:
    # As Starlette parses it (latin-1, blank values kept), so the checks see the same text.
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []


async def _send(send: Send, status: int, body: bytes, *, origin: bool) -> None:
    headers = [(b"content-length", str(len(body)).encode()), JSON_TYPE]
    if origin:
        headers.append(ALLOW_ANY_ORIGIN)
    headers.append(VARY_ORIGIN)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _vary(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], VARY_ORIGIN]
        await send(message)

    return sender


def _with_cors(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], ALLOW_ANY_ORIGIN, VARY_ORIGIN]
        await send(message)

    return sender
