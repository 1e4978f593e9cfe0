"""``/openapi.json`` describes the server as it behaves: the statuses each operation
really answers (with Google's error envelope), real parameter types, the API key, and
links from a created session to the methods that take its id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def document(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(server.url + "/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_lists_the_errors_it_answers(document: dict[str, Any]) -> None:
    operations = _operations(document)
    # The 12 Jules methods, cancel, pause, resume, and the 6 webhook methods.
    assert len(operations) == 21
    for method, path, operation in operations:
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "422" not in responses, where
        for status in ("400", "401", "429", "503"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, where
        assert "Retry-After" in responses["503"]["headers"], where
        named = any(p["in"] == "path" for p in operation.get("parameters", []))
        assert ("404" in responses) == named, where


def test_the_error_envelope_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    error = schemas["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "status"}
    assert "INVALID_ARGUMENT" in error["properties"]["status"]["enum"]


def test_page_size_is_a_bounded_integer(document: dict[str, Any]) -> None:
    seen = 0
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "pageSize":
                seen += 1
                schema = parameter["schema"]
                assert schema["type"] == "integer"
                assert schema["minimum"] == 0
                assert schema["maximum"] == 2**31 - 1
    assert seen == 5  # sessions, activities, sources, webhooks, deliveries


def test_the_api_key_is_a_security_scheme(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-Goog-Api-Key"}
    for _, _, operation in _operations(document):
        assert {"ApiKeyHeader": []} in operation["security"]


def test_prompt_is_required_where_the_server_requires_it(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model in ("CreateSessionRequest", "SendMessageRequest"):
        assert "prompt" in schemas[model]["required"]
        assert schemas[model]["properties"]["prompt"]["type"] == "string"
    create = document["paths"]["/v1alpha/sessions"]["post"]
    assert create["requestBody"]["required"] is True


def test_a_created_session_links_to_the_methods_taking_its_id(
    document: dict[str, Any],
) -> None:
    operations = {op["operationId"]: op for _, _, op in _operations(document)}
    links = operations["sessions.create"]["responses"]["200"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert {"sessions.get", "sessions.delete", "sessions.activities.list"} <= targets
    assert {"sessions.approvePlan", "sessions.sendMessage", "sessions.archive"} <= targets
    for link in links.values():
        assert link["operationId"] in operations
        assert link["parameters"] == {"session_id": "$response.body#/id"}
