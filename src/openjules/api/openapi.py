"""The OpenAPI document (``/openapi.json``) as the server really behaves.

FastAPI generates the document from the routes; this module post-processes it once, in
one place, rather than decorating every route:

- every operation lists the statuses it really answers with Google's error envelope
  (400, 401, 404 where a resource is named, 429, 503) and not FastAPI's 422, which this
  server never sends (validation errors are 400 INVALID_ARGUMENT);
- query parameters carry their real types (``pageSize`` is an int32 ≥ 0);
- the API key is declared as a security scheme (header ``X-Goog-Api-Key`` or ``?key=``);
- operations are named by their Google method (``sessions.create``), and OpenAPI links
  say which responses feed which requests (a created session's ``id`` names it in
  get, delete, the verbs and its activities), which is what stateful testers chain.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from openjules.api.errors import snake_case
from openjules.api.limits import MAX_NAME_CHARS, QUERY_FIELDS, body_limits, query_limits
from openjules.api.pagination import MAX_PAGE_SIZE
from openjules.settings import Settings

API_PREFIX = "/v1alpha/"
ERROR_REF = "#/components/schemas/Error"
# The canonical google.rpc.Code names this server sends in ``error.status``.
STATUS_NAMES = [
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "RESOURCE_EXHAUSTED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
]
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Google's JSON error envelope (google.rpc.Status under `error`).",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status code."},
                "message": {"type": "string"},
                "status": {"type": "string", "enum": STATUS_NAMES},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _error(description: str, *, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if retry:
        response["headers"] = copy.deepcopy(RETRY_AFTER)
    return response


# Statuses every API operation can answer.
COMMON_ERRORS: dict[str, dict[str, Any]] = {
    "400": _error("INVALID_ARGUMENT (a malformed request) or FAILED_PRECONDITION."),
    "401": _error("UNAUTHENTICATED: the API key is missing or not valid."),
    "429": _error("RESOURCE_EXHAUSTED: the key's request rate limit.", retry=True),
    "503": _error("UNAVAILABLE: the database cannot be reached right now.", retry=True),
}
# Operations naming a resource (a path parameter) can also answer 404.
NOT_FOUND = _error("NOT_FOUND: no such resource for this key.")

SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Goog-Api-Key"},
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
}
SECURITY: list[dict[str, list[str]]] = [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]

QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "pageSize": {
        "type": "integer",
        "format": "int32",
        "minimum": 0,
        "maximum": 2**31 - 1,
        "description": (
            f"At most this many items (0 or unset: the method's default; values over "
            f"{MAX_PAGE_SIZE} are coerced to {MAX_PAGE_SIZE})."
        ),
    },
    "pageToken": {
        "type": "string",
        "description": "The nextPageToken of the previous page.",
    },
    "filter": {"type": "string", "description": "An AIP-160 filter expression."},
    "createTime": {
        "type": "string",
        "description": "Only activities created at or after this RFC 3339 timestamp.",
    },
    "alt": {
        "type": "string",
        "enum": ["json", "sse"],
        "default": "json",
        "description": (
            "`sse`: a text/event-stream (Server-Sent Events) that sends the resource now and "
            "on every change, until the client leaves."
        ),
    },
}
# The answer of a method asked for ``alt=sse``.
EVENT_STREAM = {
    "schema": {"type": "string"},
    "example": 'event: activity\nid: 1764588715857125000\ndata: {"name":"sessions/…"}\n\n',
}

# Which operations a created (or returned) session's id feeds, and under what name.
SESSION_LINKS = {
    "GetSession": "sessions.get",
    "DeleteSession": "sessions.delete",
    "SendMessage": "sessions.sendMessage",
    "ApprovePlan": "sessions.approvePlan",
    "ArchiveSession": "sessions.archive",
    "UnarchiveSession": "sessions.unarchive",
    "ListActivities": "sessions.activities.list",
    "CancelSession": "sessions.cancel",
    "PauseSession": "sessions.pause",
    "ResumeSession": "sessions.resume",
}
# The same for a created (or returned) webhook.
WEBHOOK_LINKS = {
    "GetWebhook": "webhooks.get",
    "DeleteWebhook": "webhooks.delete",
    "TestWebhook": "webhooks.test",
    "ListDeliveries": "webhooks.deliveries.list",
}
WEBHOOK_SOURCES = ("webhooks.create", "webhooks.get")
# Lists that take no filter: only an empty one is accepted.
UNFILTERED_LISTS = ("webhooks.list", "webhooks.deliveries.list")
# Operations that answer a Session (whose id the links above pass on).
SESSION_SOURCES = (
    "sessions.create",
    "sessions.get",
    "sessions.archive",
    "sessions.unarchive",
)
# Request bodies whose prompt is required and must not be blank (the server answers 400
# otherwise), as a JSON Schema says it: generated schemas only know the Python types.
PROMPT_REQUIRED = {
    "sessions.create": "CreateSessionRequest",
    "sessions.sendMessage": "SendMessageRequest",
}
# Request bodies whose url is required (the server answers 400 otherwise).
URL_REQUIRED = {"webhooks.create": "CreateWebhookRequest"}
# Neither database stores NUL, so the server refuses it in any text (400).
TEXT_PATTERN = r"^[^\u0000]*$"
PROMPT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
# Request body models whose string fields carry the server's length limits (api.limits;
# a field it names no limit for is bounded like any name, MAX_NAME_CHARS).
REQUEST_MODELS = (
    "CreateSessionRequest",
    "SendMessageRequest",
    "SourceContextInput",
    "GitHubRepoContextInput",
)
# Methods that answer ``{}``.
EMPTY_OPERATIONS = (
    "sessions.delete",
    "sessions.sendMessage",
    "sessions.approvePlan",
    "webhooks.delete",
    "webhooks.test",
)


def install(app: FastAPI, *, settings: Settings) -> None:
    """Serve the corrected document at ``app.openapi_url`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = corrected(schema, settings=settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(schema: dict[str, Any], *, settings: Settings) -> dict[str, Any]:
    """``schema`` (as FastAPI generates it) described as the server behaves."""
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = copy.deepcopy(ERROR_SCHEMA)
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    for model in REQUEST_MODELS:
        if model in schemas:
            _correct_text_fields(schemas[model], settings=settings)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            _correct_operation(path, operation, settings=settings)
            _correct_body(operation, schemas)
    return schema


def _text(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_chars, "pattern": TEXT_PATTERN}


def _correct_text_fields(model: dict[str, Any], *, settings: Settings) -> None:
    """Each string field (``str | None`` generates anyOf string/null) with its limits."""
    # api.limits keys them by request path (``session.prompt``); a property is its last part.
    by_name = {path.rsplit(".", 1)[-1]: n for path, n in body_limits(settings).items()}
    for name, field in model.get("properties", {}).items():
        max_chars = by_name.get(snake_case(name), MAX_NAME_CHARS)
        for branch in field.get("anyOf", [field]):
            if branch.get("type") == "string" and "enum" not in branch:
                branch.update(_text(max_chars))


def _correct_url_body(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    model = URL_REQUIRED.get(operation.get("operationId", ""))
    if model is None or model not in schemas:
        return
    body = schemas[model]
    body["required"] = sorted({*body.get("required", []), "url"})
    url = body["properties"]["url"]
    string: dict[str, Any] = next(
        (b for b in url.get("anyOf", [url]) if b.get("type") == "string"), {}
    )
    body["properties"]["url"] = {
        **string,
        "type": "string",
        "minLength": 1,
        "description": "Required: an http:// or https:// URL.",
    }
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


def _correct_body(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    _correct_url_body(operation, schemas)
    model = PROMPT_REQUIRED.get(operation.get("operationId", ""))
    if model is None or model not in schemas:
        return
    body = schemas[model]
    body["required"] = sorted({*body.get("required", []), "prompt"})
    prompt = body["properties"]["prompt"]
    string: dict[str, Any] = next(
        (b for b in prompt.get("anyOf", [prompt]) if b.get("type") == "string"), {}
    )
    body["properties"]["prompt"] = {
        **string,
        "type": "string",
        "pattern": PROMPT_PATTERN,
        "description": "Required; not blank.",
    }
    if model == "CreateSessionRequest" and "SourceContextInput" in schemas:
        # A source context names its source (400 otherwise).
        context = schemas["SourceContextInput"]
        context["required"] = sorted({*context.get("required", []), "source"})
        source = context["properties"]["source"]
        context["properties"]["source"] = {
            **next((b for b in source.get("anyOf", [source]) if b.get("type") == "string"), {}),
            "minLength": 1,
        }
    # A body is required: without one (or with ``null``) there is no prompt.
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


def _correct_operation(path: str, operation: dict[str, Any], *, settings: Settings) -> None:
    # The Google method name (each route's summary) is the stable operation id.
    if summary := operation.get("summary"):
        operation["operationId"] = summary
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    if operation.get("operationId") in EMPTY_OPERATIONS and "200" in responses:
        responses["200"] = {
            "description": "An empty object.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    if not path.startswith(API_PREFIX):
        return
    operation["security"] = copy.deepcopy(SECURITY)
    responses.update(copy.deepcopy(COMMON_ERRORS))
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        responses["404"] = copy.deepcopy(NOT_FOUND)
    for parameter in parameters:
        name = parameter.get("name")
        if name == "alt" and "200" in responses:
            content = responses["200"].setdefault("content", {})
            content["text/event-stream"] = copy.deepcopy(EVENT_STREAM)
        if parameter.get("in") == "query" and name in QUERY_SCHEMAS:
            parameter["schema"] = copy.deepcopy(QUERY_SCHEMAS[name])
            parameter["required"] = False
            if parameter["schema"]["type"] == "string":
                field = QUERY_FIELDS.get(name, name)
                limit = query_limits(settings).get(field, MAX_NAME_CHARS)
                parameter["schema"].update(_text(limit))
        elif parameter.get("in") == "path":
            parameter["schema"] = {**parameter.get("schema", {}), **_text(MAX_NAME_CHARS)}
    if operation.get("operationId") in SESSION_SOURCES and "200" in responses:
        responses["200"]["links"] = {
            name: {"operationId": target, "parameters": {"session_id": "$response.body#/id"}}
            for name, target in SESSION_LINKS.items()
        }
    if operation.get("operationId") in WEBHOOK_SOURCES and "200" in responses:
        responses["200"]["links"] = {
            name: {"operationId": target, "parameters": {"webhook_id": "$response.body#/id"}}
            for name, target in WEBHOOK_LINKS.items()
        }
    if operation.get("operationId") in UNFILTERED_LISTS:
        for parameter in parameters:
            if parameter.get("name") == "filter":
                parameter["schema"] = {
                    "type": "string",
                    "maxLength": 0,
                    "description": "This list takes no filter.",
                }
    if operation.get("operationId") == "sources.list" and "200" in responses:
        # A listed source's id (``github/OWNER/REPO``) names it in sources.get.
        responses["200"]["links"] = {
            "GetSource": {
                "operationId": "sources.get",
                "parameters": {"source_id": "$response.body#/sources/0/id"},
            }
        }
    # Sorted so the document reads in status order.
    operation["responses"] = dict(sorted(responses.items()))
