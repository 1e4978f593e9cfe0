"""The test kit's HTTP fronts on their own, driven with plain httpx: ``FlakyHTTP`` in front
of a ``WebhookReceiver`` (which records what reached it), and ``PlainJules`` in front of
that ``FlakyHTTP`` failing nothing (which records what ``PlainJules`` forwarded)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from openjules.testing import (
    JULES_METHOD_NAMES,
    FlakyHTTP,
    PlainJules,
    TryOutcome,
    WebhookReceiver,
)
from openjules.testing.plain_jules import jules_method_of

KEY = "ojk_test_key"
SID = "1234567890123456789"


@pytest.fixture
def upstream() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _root(receiver: WebhookReceiver) -> str:
    return receiver.url.removesuffix("/hook")


@pytest.fixture
def flaky(upstream: WebhookReceiver) -> Iterator[FlakyHTTP]:
    with FlakyHTTP(upstream=_root(upstream)) as front:
        yield front


@pytest.fixture
def plain(flaky: FlakyHTTP) -> Iterator[PlainJules]:
    with PlainJules(upstream=flaky.url) as jules:
        yield jules


# --- PlainJules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/v1alpha/sessions", "sessions.create"),
        ("GET", f"/v1alpha/sessions/{SID}", "sessions.get"),
        ("GET", "/v1alpha/sessions", "sessions.list"),
        ("DELETE", f"/v1alpha/sessions/{SID}", "sessions.delete"),
        ("POST", f"/v1alpha/sessions/{SID}:sendMessage", "sessions.sendMessage"),
        ("POST", f"/v1alpha/sessions/{SID}:approvePlan", "sessions.approvePlan"),
        ("POST", f"/v1alpha/sessions/{SID}:archive", "sessions.archive"),
        ("POST", f"/v1alpha/sessions/{SID}:unarchive", "sessions.unarchive"),
        ("GET", f"/v1alpha/sessions/{SID}/activities/abc", "sessions.activities.get"),
        ("GET", f"/v1alpha/sessions/{SID}/activities", "sessions.activities.list"),
        ("GET", "/v1alpha/sources/github/acme/demo", "sources.get"),
        ("GET", "/v1alpha/sources", "sources.list"),
        ("POST", f"/v1alpha/sessions/{SID}:cancel", None),
        ("POST", f"/v1alpha/sessions/{SID}:pause", None),
        ("POST", f"/v1alpha/sessions/{SID}:resume", None),
        ("GET", "/v1alpha/webhooks", None),
        ("GET", "/$discovery/rest", None),
        ("PUT", "/v1alpha/sessions", None),
        ("POST", f"/v1alpha/sessions/{SID}/approvePlan", None),
        ("GET", "/", None),
    ],
)
def test_the_twelve_methods_and_nothing_else(method: str, path: str, name: str | None) -> None:
    assert jules_method_of(method, path) == name
    assert name is None or name in JULES_METHOD_NAMES


def test_a_jules_method_is_forwarded_and_answered_unchanged(
    plain: PlainJules, flaky: FlakyHTTP, upstream: WebhookReceiver
) -> None:
    upstream.answer(503, times=1)
    response = httpx.post(
        f"{plain.url}/v1alpha/sessions/{SID}%3AsendMessage?x=1&y=two%20words",
        headers={"X-Goog-Api-Key": KEY, "Content-Type": "application/json"},
        content=b'{"prompt": "hello"}',
    )
    # The upstream's answer, as it gave it.
    assert response.status_code == 503
    assert response.text == "scripted failure"
    [got] = upstream.requests
    assert (got.method, got.path, got.body) == (
        "POST",
        f"/v1alpha/sessions/{SID}:sendMessage",
        b'{"prompt": "hello"}',
    )
    assert got.headers["x-goog-api-key"] == KEY
    assert got.headers["content-type"] == "application/json"
    [forwarded] = flaky.requests
    assert forwarded.params == {"x": ["1"], "y": ["two words"]}
    assert [r.jules_method for r in plain.requests] == ["sessions.sendMessage"]


def test_alt_is_dropped_and_the_rest_of_the_query_kept(plain: PlainJules, flaky: FlakyHTTP) -> None:
    after = 'create_time>"2026-01-01T00:00:00Z"'
    response = httpx.get(
        f"{plain.url}/v1alpha/sessions/{SID}/activities",
        params={"alt": "sse", "filter": after, "pageSize": "5"},
    )
    assert response.status_code == 200
    [asked] = plain.requests
    assert asked.params == {"alt": ["sse"], "filter": [after], "pageSize": ["5"]}
    [forwarded] = flaky.requests
    assert forwarded.params == {"filter": [after], "pageSize": ["5"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", f"/v1alpha/sessions/{SID}:cancel"), ("GET", "/healthz"), ("GET", "/")],
)
def test_anything_else_is_googles_404_page(
    plain: PlainJules, upstream: WebhookReceiver, method: str, path: str
) -> None:
    response = httpx.request(method, plain.url + path, headers={"X-Goog-Api-Key": KEY})
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert "Error 404 (Not Found)" in response.text
    assert f"<code>{path}</code> was not found on this server" in response.text
    assert upstream.requests == []
    assert [r.jules_method for r in plain.requests] == [None]


# --- FlakyHTTP -----------------------------------------------------------------------


def test_failures_come_first_then_requests_pass(
    flaky: FlakyHTTP, upstream: WebhookReceiver
) -> None:
    flaky.fail(503, times=2, retry_after=1)
    with httpx.Client(base_url=flaky.url) as http:
        answers = [http.get("/v1alpha/sessions") for _ in range(3)]
    for failed in answers[:2]:
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == "1"
        assert failed.json() == {
            "error": {
                "code": 503,
                "message": "The service is currently unavailable.",
                "status": "UNAVAILABLE",
            }
        }
    assert (answers[2].status_code, answers[2].text) == (200, "ok")
    assert len(upstream.requests) == 1
    assert [r.outcome for r in flaky.requests] == [
        TryOutcome.FAILED,
        TryOutcome.FAILED,
        TryOutcome.FORWARDED,
    ]
    assert [r.status for r in flaky.requests] == [503, 503, 200]


def test_a_failure_for_a_method_and_path_leaves_others_alone(flaky: FlakyHTTP) -> None:
    flaky.fail(403, method="POST", path="/v1alpha/sessions", message="no")
    with httpx.Client(base_url=flaky.url) as http:
        assert http.get("/v1alpha/sessions").status_code == 200
        assert http.post(f"/v1alpha/sessions/{SID}:archive").status_code == 200
        refused = http.post("/v1alpha/sessions", json={})
        assert http.post("/v1alpha/sessions", json={}).status_code == 200
    assert refused.status_code == 403
    assert refused.json()["error"] == {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}
    assert flaky.tries(method="POST", path="/v1alpha/sessions") == 2
    assert flaky.tries() == 4


def test_without_an_envelope_the_answer_is_a_page(flaky: FlakyHTTP) -> None:
    flaky.fail(502, envelope=False, message="Bad Gateway")
    response = httpx.get(flaky.url + "/v1alpha/sessions")
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert "502 Bad Gateway" in response.text


def test_a_dropped_request_gets_no_answer(flaky: FlakyHTTP, upstream: WebhookReceiver) -> None:
    flaky.drop(method="POST")
    with httpx.Client(base_url=flaky.url) as http:
        with pytest.raises(httpx.TransportError):
            http.post("/v1alpha/sessions", json={})
        # The next request (a new connection) goes through.
        assert http.post("/v1alpha/sessions", json={}).status_code == 200
    assert len(upstream.requests) == 1
    assert [(r.outcome, r.status) for r in flaky.requests] == [
        (TryOutcome.DROPPED, None),
        (TryOutcome.FORWARDED, 200),
    ]


def test_clear_forgets_failures_not_yet_used(flaky: FlakyHTTP) -> None:
    flaky.fail(500, times=5)
    assert httpx.get(flaky.url + "/x").status_code == 500
    flaky.clear()
    assert httpx.get(flaky.url + "/x").status_code == 200
