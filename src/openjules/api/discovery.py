"""The Google discovery document (``/$discovery/rest?version=v1alpha``): Jules' 12 methods,
then openjules' extensions (cancel, pause, resume; webhooks), and the ``alt=sse`` streams.

Schemas are generated from the wire models in ``_types`` so the document cannot drift from
what the server actually sends.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel

from openjules import _types

NAME_PARAM = {"type": "string", "location": "path", "required": True}
LIST_PARAMS = {
    "pageSize": {"type": "integer", "format": "int32", "location": "query"},
    "pageToken": {"type": "string", "location": "query"},
    "filter": {"type": "string", "location": "query"},
}
SESSION_NAME = {"name": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}}
WEBHOOK_NAME = {"name": {**NAME_PARAM, "pattern": "^webhooks/[^/]+$"}}
PAGE_PARAMS = {k: v for k, v in LIST_PARAMS.items() if k != "filter"}
# Output-only schemas that have no model of their own.
EMPTY_SCHEMAS = (
    "Empty",
    "ApprovePlanRequest",
    "ApprovePlanResponse",
    "ArchiveSessionRequest",
    "UnarchiveSessionRequest",
    "SendMessageResponse",
    "CancelSessionRequest",
    "PauseSessionRequest",
    "ResumeSessionRequest",
    "TestWebhookRequest",
)
# Google's standard ``alt`` parameter, with the event streams openjules adds.
ALT_PARAM = {
    "type": "string",
    "location": "query",
    "default": "json",
    "enum": ["json", "sse"],
    "enumDescriptions": [
        "One JSON response.",
        "A text/event-stream (Server-Sent Events): sessions.get, sessions.list and "
        "sessions.activities.list stream the resource on every change.",
    ],
    "description": "The response format.",
}


@dataclass(frozen=True)
class Method:
    resource: tuple[str, ...]
    name: str
    http: str
    path: str
    params: dict[str, Any]
    request: str | None
    response: str


METHODS: tuple[Method, ...] = (
    Method(("sessions",), "create", "POST", "v1alpha/sessions", {}, "Session", "Session"),
    Method(
        ("sessions",),
        "get",
        "GET",
        "v1alpha/{+name}",
        {"name": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}},
        None,
        "Session",
    ),
    Method(
        ("sessions",), "list", "GET", "v1alpha/sessions", LIST_PARAMS, None, "ListSessionsResponse"
    ),
    Method(
        ("sessions",),
        "delete",
        "DELETE",
        "v1alpha/{+name}",
        {"name": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}},
        None,
        "Empty",
    ),
    Method(
        ("sessions",),
        "sendMessage",
        "POST",
        "v1alpha/{+session}:sendMessage",
        {"session": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}},
        "SendMessageRequest",
        "SendMessageResponse",
    ),
    Method(
        ("sessions",),
        "approvePlan",
        "POST",
        "v1alpha/{+session}:approvePlan",
        {"session": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}},
        "ApprovePlanRequest",
        "ApprovePlanResponse",
    ),
    Method(
        ("sessions",),
        "archive",
        "POST",
        "v1alpha/{+name}:archive",
        {"name": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}},
        "ArchiveSessionRequest",
        "Session",
    ),
    Method(
        ("sessions",),
        "unarchive",
        "POST",
        "v1alpha/{+name}:unarchive",
        {"name": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}},
        "UnarchiveSessionRequest",
        "Session",
    ),
    Method(
        ("sessions", "activities"),
        "get",
        "GET",
        "v1alpha/{+name}",
        {"name": {**NAME_PARAM, "pattern": "^sessions/[^/]+/activities/[^/]+$"}},
        None,
        "Activity",
    ),
    Method(
        ("sessions", "activities"),
        "list",
        "GET",
        "v1alpha/{+parent}/activities",
        {"parent": {**NAME_PARAM, "pattern": "^sessions/[^/]+$"}, **LIST_PARAMS},
        None,
        "ListActivitiesResponse",
    ),
    Method(
        ("sources",),
        "get",
        "GET",
        "v1alpha/{+name}",
        {"name": {**NAME_PARAM, "pattern": "^sources/.*$"}},
        None,
        "Source",
    ),
    Method(
        ("sources",), "list", "GET", "v1alpha/sources", LIST_PARAMS, None, "ListSourcesResponse"
    ),
    # openjules' extensions: a person's verbs beyond Jules' own...
    *(
        Method(
            ("sessions",),
            verb,
            "POST",
            f"v1alpha/{{+name}}:{verb}",
            SESSION_NAME,
            f"{verb.capitalize()}SessionRequest",
            "Session",
        )
        for verb in ("cancel", "pause", "resume")
    ),
    # ... and webhooks.
    Method(("webhooks",), "create", "POST", "v1alpha/webhooks", {}, "Webhook", "Webhook"),
    Method(
        ("webhooks",), "list", "GET", "v1alpha/webhooks", PAGE_PARAMS, None, "ListWebhooksResponse"
    ),
    Method(("webhooks",), "get", "GET", "v1alpha/{+name}", WEBHOOK_NAME, None, "Webhook"),
    Method(("webhooks",), "delete", "DELETE", "v1alpha/{+name}", WEBHOOK_NAME, None, "Empty"),
    Method(
        ("webhooks",),
        "test",
        "POST",
        "v1alpha/{+name}:test",
        WEBHOOK_NAME,
        "TestWebhookRequest",
        "Empty",
    ),
    Method(
        ("webhooks", "deliveries"),
        "list",
        "GET",
        "v1alpha/{+parent}/deliveries",
        {"parent": {**NAME_PARAM, "pattern": "^webhooks/[^/]+$"}, **PAGE_PARAMS},
        None,
        "ListWebhookDeliveriesResponse",
    ),
)

SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    _types.Session,
    _types.SourceContext,
    _types.GitHubRepoContext,
    _types.SessionOutput,
    _types.PullRequest,
    _types.ChangeSet,
    _types.GitPatch,
    _types.ListSessionsResponse,
    _types.Activity,
    _types.Artifact,
    _types.Media,
    _types.BashOutput,
    _types.AgentMessaged,
    _types.UserMessaged,
    _types.PlanGenerated,
    _types.PlanApproved,
    _types.ProgressUpdated,
    _types.SessionCompleted,
    _types.SessionFailed,
    _types.Plan,
    _types.PlanStep,
    _types.ListActivitiesResponse,
    _types.Source,
    _types.GitHubRepo,
    _types.GitHubBranch,
    _types.ListSourcesResponse,
    _types.SendMessageRequest,
    _types.Webhook,
    _types.ListWebhooksResponse,
    _types.WebhookDelivery,
    _types.ListWebhookDeliveriesResponse,
)


def _type_schema(annotation: Any, field_name: str) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _type_schema(args[0], field_name)
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(annotation)[0], field_name)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"$ref": annotation.__name__}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {"type": "string", "enum": [m.value for m in annotation]}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer", "format": "int32"}
    if field_name.endswith("_time"):
        return {"type": "string", "format": "google-datetime"}
    return {"type": "string"}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    properties = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        properties[alias] = _type_schema(info.annotation, name)
    name = model.__name__
    return {"id": name, "type": "object", "properties": properties}


def _method(method: Method) -> dict[str, Any]:
    dotted = ".".join((*method.resource, method.name))
    body: dict[str, Any] = {
        "id": f"jules.{dotted}",
        "path": method.path,
        "flatPath": method.path,
        "httpMethod": method.http,
        "parameters": method.params,
        "parameterOrder": [k for k, v in method.params.items() if v.get("required")],
        "response": {"$ref": method.response},
    }
    if method.request:
        body["request"] = {"$ref": method.request}
    return body


def discovery_document(*, root_url: str) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for method in METHODS:
        node = resources
        for part in method.resource:
            node = node.setdefault(part, {})
            node.setdefault("methods", {})
            last = node
            node = node.setdefault("resources", {})
        last["methods"][method.name] = _method(method)
    _prune(resources)
    schemas = {m.__name__: _schema(m) for m in SCHEMA_MODELS}
    for empty in EMPTY_SCHEMAS:
        schemas[empty] = {"id": empty, "type": "object", "properties": {}}
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "jules:v1alpha",
        "name": "jules",
        "version": "v1alpha",
        "title": "Jules API (openjules)",
        "protocol": "rest",
        "rootUrl": root_url.rstrip("/") + "/",
        "servicePath": "",
        "baseUrl": root_url.rstrip("/") + "/",
        "parameters": {
            "key": {
                "type": "string",
                "location": "query",
                "description": "API key; the X-Goog-Api-Key header works too.",
            },
            "alt": ALT_PARAM,
        },
        "schemas": schemas,
        "resources": resources,
    }


def _prune(resources: dict[str, Any]) -> None:
    for node in resources.values():
        if node.get("resources"):
            _prune(node["resources"])
        else:
            node.pop("resources", None)
