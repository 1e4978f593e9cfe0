"""Every non-2xx response is Google's envelope: ``{"error": {code, message, status}}``."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from openjules._errors import (
    APIError,
    FieldViolation,
    Internal,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
)
from openjules.api.responses import JSONBytes

log = logging.getLogger("openjules.api")
PROTO_PACKAGE = "type.googleapis.com/google.labs.jules.v1alpha"

# Which request field a route's body binds to, for error paths like 'session.prompt'.
BODY_FIELD_BY_ROUTE = {"create_session": "session"}


def envelope_response(error: APIError, *, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(error.envelope(), separators=(",", ":"), ensure_ascii=False)
    return JSONBytes(body.encode(), status_code=error.http_code, headers=headers)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _pascal(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def _violation(error: dict[str, Any], *, prefix: str) -> tuple[FieldViolation, str]:
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "extra_forbidden" and loc:
        name = loc[-1]
        parent = ".".join([prefix, *(_snake(p) for p in loc[:-1])]).strip(".") or "request"
        message = (
            f"Invalid JSON payload received. Unknown name \"{name}\" at '{parent}': "
            "Cannot find field."
        )
        return FieldViolation(parent, message), message
    path = ".".join([prefix, *(_snake(p) for p in loc)]).strip(".") or prefix or "request"
    value = json.dumps(error.get("input"), ensure_ascii=False, default=str)
    kind = error.get("type", "")
    if kind == "enum":
        type_name = f"{PROTO_PACKAGE}.{_pascal(_snake(loc[-1]))}" if loc else "enum"
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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return envelope_response(
            NotFound(f"The requested URL {request.url.path} was not found on this server.")
        )
    if exc.status_code == 405:
        # Starlette names only the first route matching the path; list every route's methods.
        methods = [
            m
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(
                r.matches({**request.scope, "method": m})[0] is Match.FULL
                for r in request.app.router.routes
            )
        ]
        allow = ", ".join(methods) or (exc.headers or {}).get("Allow", "")
        return envelope_response(
            MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."),
            headers={"Allow": allow} if allow else None,
        )
    error = APIError(str(exc.detail))
    error.http_code = exc.status_code  # type: ignore[misc]
    return envelope_response(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return envelope_response(Internal("Internal error. The server log has the details."))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
