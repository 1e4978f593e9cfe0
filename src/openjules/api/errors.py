"""Every non-2xx response is Google's envelope: ``{"error": {code, message, status}}``."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openjules._errors import (
    AlreadyExists,
    APIError,
    FieldViolation,
    Internal,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from openjules.api.responses import JSONBytes
from openjules.store.database import as_unavailable

log = logging.getLogger("openjules.api")
PROTO_PACKAGE = "type.googleapis.com/google.labs.jules.v1alpha"

# How long browsers may cache a CORS preflight answer (the CORS middleware's max_age too).
CORS_MAX_AGE_S = 3600
# Which request field a route's body binds to, for error paths like 'session.prompt'.
BODY_FIELD_BY_ROUTE = {"create_session": "session"}


def envelope_response(error: APIError, *, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(error.envelope(), separators=(",", ":"), ensure_ascii=False)
    # A lone surrogate quoted from the request cannot be UTF-8: send it as a JSON escape.
    return JSONBytes(
        body.encode("utf-8", "backslashreplace"), status_code=error.http_code, headers=headers
    )


def snake_case(name: str) -> str:
    """``pageToken`` → ``page_token``: how Google names request fields in errors."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _pascal(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def _violation(error: dict[str, Any], *, prefix: str) -> tuple[FieldViolation, str]:
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "extra_forbidden" and loc:
        name = loc[-1]
        parent = ".".join([prefix, *(snake_case(p) for p in loc[:-1])]).strip(".") or "request"
        message = (
            f"Invalid JSON payload received. Unknown name \"{name}\" at '{parent}': "
            "Cannot find field."
        )
        return FieldViolation(parent, message), message
    path = ".".join([prefix, *(snake_case(p) for p in loc)]).strip(".") or prefix or "request"
    value = json.dumps(error.get("input"), ensure_ascii=False, default=str)
    kind = error.get("type", "")
    if kind == "enum":
        type_name = f"{PROTO_PACKAGE}.{_pascal(snake_case(loc[-1]))}" if loc else "enum"
        message = f"Invalid value at '{path}' ({type_name}), {value}"
    elif kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        message = f"Invalid JSON payload received. Expected an object at '{path}', got {value}."
    else:
        message = f"Invalid value at '{path}' ({error.get('msg', 'invalid')}), {value}"
    return FieldViolation(path, message), message


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "malformed JSON")
        return envelope_response(InvalidArgument(f"Invalid JSON payload received. {reason}."))
    route = request.scope.get("route")
    prefix = BODY_FIELD_BY_ROUTE.get(getattr(route, "name", ""), "")
    violations: list[FieldViolation] = []
    messages: list[str] = []
    for error in errors:
        violation, message = _violation(error, prefix=prefix)
        violations.append(violation)
        messages.append(message)
    return envelope_response(InvalidArgument("\n".join(messages), field_violations=violations))


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return envelope_response(exc, headers=retry_headers(exc))


def retry_headers(error: APIError) -> dict[str, str] | None:
    if error.retry_after_seconds is None:
        return None
    return {"Retry-After": str(error.retry_after_seconds)}


# Starlette raises HTTPException for what it rejects itself (an unparsable body, an
# unknown path or method); each code gets the google.rpc status name Google sends for it.
_ERROR_BY_HTTP_CODE: dict[int, type[APIError]] = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: AlreadyExists,
    # Google answers an oversized payload with 400 INVALID_ARGUMENT, not 413.
    413: InvalidArgument,
    # An unsupported media type or unprocessable entity is a bad argument too.
    415: InvalidArgument,
    422: InvalidArgument,
    429: ResourceExhausted,
    501: MethodNotAllowed,
    503: Unavailable,
}

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Why Starlette's own 400 says "There was an error parsing the body": the body is not
# JSON (or not UTF-8). Say what Google says for that.
_BODY_PARSE_MESSAGE = "There was an error parsing the body"


def allowed_methods(request: Request) -> list[str]:
    """The methods this path supports, as ``Allow`` and the OpenAPI document name them.

    Starlette names only the first route matching the path, so every route is asked.
    Of the routes matching, a ``:verb`` route (``sessions/{id}:archive``) is preferred
    over the plain path (``sessions/{id}``, which also matches ``0:archive`` as an id);
    and routes hidden from the document (the catch-all for unknown verbs) count only
    where no documented route matches.
    """
    matching: list[tuple[str, str, bool]] = []  # method, path format, documented
    for route in iter_route_contexts(request.app.router.routes):
        for method in METHODS:
            if route.matches({**request.scope, "method": method})[0] is Match.FULL:
                path = route.path_format or ""
                matching.append((method, path, bool(getattr(route, "include_in_schema", False))))
    verbs = [m for m in matching if m[2] and ":" in m[1]]
    documented = [m for m in matching if m[2]]
    methods = {method for method, _, _ in verbs or documented or matching}
    return [m for m in METHODS if m in methods]


# Set on ``app.state`` by a front end served beside the API (the web app): how a person's
# browser is told that a page does not exist. API paths are always answered with JSON.
PAGE_NOT_FOUND = "page_not_found"
API_PATH_PREFIXES = ("/v1alpha", "/$discovery", "/openapi.json", "/healthz", "/readyz")


def _wants_a_page(request: Request) -> bool:
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith(API_PATH_PREFIXES)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        error = NotFound(f"The requested URL {request.url.path} was not found on this server.")
        page = getattr(request.app.state, PAGE_NOT_FOUND, None)
        if page is not None and _wants_a_page(request):
            response: Response = page(request, error)
            return response
        return envelope_response(error)
    if exc.status_code == 405:
        methods = allowed_methods(request)
        if request.method == "OPTIONS" and methods:
            return _options(methods)
        fallback = (exc.headers or {}).get("Allow", "")
        allow = ", ".join([*methods, "OPTIONS"]) if methods else fallback
        return envelope_response(
            MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."),
            headers={"Allow": allow} if allow else None,
        )
    message = str(exc.detail)
    if exc.status_code == 400 and message == _BODY_PARSE_MESSAGE:
        message = "Invalid JSON payload received. The body is not valid UTF-8 JSON."
    cls = _ERROR_BY_HTTP_CODE.get(exc.status_code)
    if cls is None:
        cls = InvalidArgument if 400 <= exc.status_code < 500 else Internal
    return envelope_response(cls(message))


class ErrorBoundary:
    """Renders any exception that escapes the app as the envelope: 503 UNAVAILABLE with
    Retry-After for a database outage, else 500 INTERNAL (logged once, with traceback).

    A pure ASGI middleware inside Starlette's ServerErrorMiddleware that does not
    re-raise, so uvicorn sees a finished response and keeps the connection open for the
    client's next request. Only an exception after the response has started (nothing
    more can be said in it) propagates, and uvicorn then rightly closes the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            if started:
                raise
            error = error_for(scope, exc)
            response = envelope_response(error, headers=retry_headers(error))
            await response(scope, receive, send)


def error_for(scope: Scope, exc: Exception) -> APIError:
    where = f"{scope.get('method')} {scope.get('path')}"
    if outage := as_unavailable(exc):
        log.warning("database unavailable on %s: %s", where, exc)
        return outage
    log.error("unhandled error on %s", where, exc_info=exc)
    return Internal("Internal error. The server log has the details.")


def _options(methods: list[str]) -> Response:
    """What a CORS-aware server answers to a plain ``OPTIONS`` (a CORS preflight, with
    ``Access-Control-Request-Method``, is answered earlier by the CORS middleware)."""
    allow = ", ".join([*methods, "OPTIONS"])
    return Response(
        status_code=204,
        headers={
            "Allow": allow,
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": allow,
            "Access-Control-Allow-Headers": "*",
            "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
        },
    )


def install(app: FastAPI) -> None:
    """Exception handlers for what the routes raise, and the boundary that turns any
    other exception into an envelope. No handler is registered for ``Exception``:
    Starlette runs that one in ServerErrorMiddleware, which re-raises after answering,
    and uvicorn then drops the keep-alive connection."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(ErrorBoundary)
