"""/openapi.json and Google's discovery document describe the API the server really serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer, register_source

# Spec §3: the 12 methods, their HTTP verbs and discovery paths.
METHODS = {
    "sessions.create": ("POST", "v1alpha/sessions"),
    "sessions.get": ("GET", "v1alpha/{+name}"),
    "sessions.list": ("GET", "v1alpha/sessions"),
    "sessions.delete": ("DELETE", "v1alpha/{+name}"),
    "sessions.sendMessage": ("POST", "v1alpha/{+session}:sendMessage"),
    "sessions.approvePlan": ("POST", "v1alpha/{+session}:approvePlan"),
    "sessions.archive": ("POST", "v1alpha/{+name}:archive"),
    "sessions.unarchive": ("POST", "v1alpha/{+name}:unarchive"),
    "sessions.activities.get": ("GET", "v1alpha/{+name}"),
    "sessions.activities.list": ("GET", "v1alpha/{+parent}/activities"),
    "sources.get": ("GET", "v1alpha/{+name}"),
    "sources.list": ("GET", "v1alpha/sources"),
}
LIST_METHODS = ("sessions.list", "sessions.activities.list", "sources.list")
# openjules' extensions: verbs beyond Jules' own, and webhooks.
EXTENSIONS = {
    "sessions.cancel": ("POST", "v1alpha/{+name}:cancel"),
    "sessions.pause": ("POST", "v1alpha/{+name}:pause"),
    "sessions.resume": ("POST", "v1alpha/{+name}:resume"),
    "webhooks.create": ("POST", "v1alpha/webhooks"),
    "webhooks.list": ("GET", "v1alpha/webhooks"),
    "webhooks.get": ("GET", "v1alpha/{+name}"),
    "webhooks.delete": ("DELETE", "v1alpha/{+name}"),
    "webhooks.test": ("POST", "v1alpha/{+name}:test"),
    "webhooks.deliveries.list": ("GET", "v1alpha/{+parent}/deliveries"),
}


@pytest.fixture(scope="module")
def discovery(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/$discovery/rest", params={"version": "v1alpha"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def openapi(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _methods(resources: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, node in resources.items():
        dotted = f"{prefix}{name}"
        for method, body in node.get("methods", {}).items():
            found[f"{dotted}.{method}"] = body
        found.update(_methods(node.get("resources", {}), f"{dotted}."))
    return found


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_discovery_lists_the_twelve_methods_and_the_extensions(discovery: dict[str, Any]) -> None:
    assert discovery["kind"] == "discovery#restDescription"
    assert discovery["version"] == "v1alpha"
    assert set(discovery["resources"]) == {"sessions", "sources", "webhooks"}
    methods = _methods(discovery["resources"])
    assert {k: (m["httpMethod"], m["path"]) for k, m in methods.items()} == {
        **METHODS,
        **EXTENSIONS,
    }
    for verb in ("cancel", "pause", "resume"):
        assert methods[f"sessions.{verb}"]["response"] == {"$ref": "Session"}
    assert methods["webhooks.create"]["request"] == {"$ref": "Webhook"}
    assert "secret" in discovery["schemas"]["Webhook"]["properties"]
    # Google's standard `alt` parameter, with the event streams.
    assert discovery["parameters"]["alt"]["enum"] == ["json", "sse"]
    for name, method in methods.items():
        assert method["id"].endswith(name), method["id"]
        for param in re.findall(r"\{\+(\w+)\}", method["path"]):
            spec = method["parameters"][param]
            assert spec["location"] == "path"
            assert spec["required"] is True
    for name in LIST_METHODS:
        params = methods[name]["parameters"]
        assert {"pageSize", "pageToken", "filter"} <= set(params)
        assert all(params[p]["location"] == "query" for p in ("pageSize", "pageToken", "filter"))


def test_discovery_schemas(discovery: dict[str, Any]) -> None:
    schemas = discovery["schemas"]
    session = schemas["Session"]["properties"]
    assert {
        "name",
        "id",
        "prompt",
        "sourceContext",
        "title",
        "createTime",
        "updateTime",
        "state",
        "url",
        "outputs",
        "archived",
    } <= set(session)
    assert "COMPLETED" in session["state"]["enum"]
    activity = schemas["Activity"]["properties"]
    assert {
        "name",
        "id",
        "createTime",
        "originator",
        "artifacts",
        "agentMessaged",
        "userMessaged",
        "planGenerated",
        "planApproved",
        "progressUpdated",
        "sessionCompleted",
        "sessionFailed",
    } <= set(activity)
    source = schemas["Source"]["properties"]
    assert set(source) >= {"name", "id", "githubRepo"}
    assert source["githubRepo"] == {"$ref": "GitHubRepo"}
    assert {"owner", "repo", "isPrivate", "defaultBranch", "branches"} <= set(
        schemas["GitHubRepo"]["properties"]
    )
    methods = _methods(discovery["resources"])
    assert methods["sessions.create"]["request"] == {"$ref": "Session"}
    assert methods["sessions.sendMessage"]["request"] == {"$ref": "SendMessageRequest"}
    assert "prompt" in schemas["SendMessageRequest"]["properties"]
    dangling = _refs(discovery) - set(schemas)
    assert not dangling, f"references to undefined schemas: {dangling}"


@pytest.mark.parametrize("query", [{}, {"version": "v1alpha"}])
def test_discovery_needs_no_key(server: LiveServer, query: dict[str, str]) -> None:
    response = httpx.get(f"{server.url}/$discovery/rest", params=query, timeout=30)
    assert response.status_code == 200
    assert response.json()["version"] == "v1alpha"


@pytest.mark.parametrize("version", ["v1", "v1beta", "v2alpha"])
def test_discovery_unknown_version(server: LiveServer, version: str) -> None:
    response = httpx.get(f"{server.url}/$discovery/rest", params={"version": version}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert version in error["message"]


def _expand(path: str, **values: str) -> str:
    return re.sub(r"\{\+(\w+)\}", lambda m: values[m.group(1)], path)


def test_a_discovery_driven_client_works(
    server: LiveServer, discovery: dict[str, Any], client: httpx.Client, git_repo: Path
) -> None:
    """Build URLs only from rootUrl, servicePath and method paths, as generated clients do,
    and check each answer uses only properties the document declares."""
    register_source(server.settings, location=str(git_repo), owner="disco", repo="app")
    base = discovery["rootUrl"] + discovery["servicePath"]
    methods = _methods(discovery["resources"])
    schemas = discovery["schemas"]

    def call(method: str, body: Any = None, **names: str) -> Any:
        spec = methods[method]
        url = base + _expand(spec["path"], **names)
        response = client.request(spec["httpMethod"], url, json=body)
        assert response.status_code == 200, (method, url, response.text)
        result = response.json()
        _conforms(result, spec["response"]["$ref"], schemas)
        return result

    session = call(
        "sessions.create",
        {"prompt": "Discovered", "sourceContext": {"source": "sources/github/disco/app"}},
    )
    assert call("sessions.get", name=session["name"]) == session
    assert call("sessions.sendMessage", {"prompt": "hello"}, session=session["name"]) == {}
    activities = call("sessions.activities.list", parent=session["name"])["activities"]
    assert call("sessions.activities.get", name=activities[0]["name"]) == activities[0]
    assert call("sessions.archive", {}, name=session["name"])["archived"] is True
    assert "archived" not in call("sessions.unarchive", {}, name=session["name"])
    assert session["id"] in {s["id"] for s in call("sessions.list")["sessions"]}
    source = call("sources.get", name="sources/github/disco/app")
    assert source["githubRepo"]["repo"] == "app"
    assert source in call("sources.list")["sources"]
    assert call("sessions.delete", name=session["name"]) == {}


def _conforms(value: Any, schema_name: str, schemas: dict[str, Any], path: str = "$") -> None:
    """Every property in ``value`` is declared by the schema (recursively)."""
    properties = schemas[schema_name]["properties"]
    assert isinstance(value, dict), path
    for key, item in value.items():
        assert key in properties, f"{path}.{key} is not in the {schema_name} schema"
        spec = properties[key]
        if spec.get("type") == "array":
            spec = spec["items"]
            items = item
        else:
            items = [item]
        if "$ref" in spec:
            for i, element in enumerate(items):
                _conforms(element, spec["$ref"], schemas, f"{path}.{key}[{i}]")


def test_openapi_lists_the_real_paths(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    expected = {
        "/v1alpha/sessions": {"get", "post"},
        "/v1alpha/sessions/{session_id}": {"get", "delete"},
        "/v1alpha/sessions/{session_id}:sendMessage": {"post"},
        "/v1alpha/sessions/{session_id}:approvePlan": {"post"},
        "/v1alpha/sessions/{session_id}:archive": {"post"},
        "/v1alpha/sessions/{session_id}:unarchive": {"post"},
        "/v1alpha/sessions/{session_id}/activities": {"get"},
        "/v1alpha/sessions/{session_id}/activities/{activity_id}": {"get"},
        "/v1alpha/sources": {"get"},
        "/v1alpha/sources/{source_id}": {"get"},
    }
    for path, verbs in expected.items():
        assert path in paths, f"{path} missing from /openapi.json"
        assert verbs <= set(paths[path]), (path, set(paths[path]))


def _body_schema(openapi: dict[str, Any], path: str) -> dict[str, Any]:
    """The request body schema of POST ``path``, with $refs resolved."""
    content = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    schema: dict[str, Any] = content["schema"]
    options = schema.get("anyOf", [schema])
    ref = next(o["$ref"] for o in options if "$ref" in o)
    resolved: dict[str, Any] = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


def test_openapi_request_bodies(openapi: dict[str, Any]) -> None:
    create = _body_schema(openapi, "/v1alpha/sessions")["properties"]
    assert {"prompt", "sourceContext", "title", "requirePlanApproval", "automationMode"} <= set(
        create
    )
    send = _body_schema(openapi, "/v1alpha/sessions/{session_id}:sendMessage")["properties"]
    assert "prompt" in send
    list_sources = openapi["paths"]["/v1alpha/sources"]["get"]
    params = {p["name"] for p in list_sources["parameters"]}
    assert {"pageSize", "pageToken", "filter"} <= params
