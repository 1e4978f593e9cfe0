"""Webhooks through the API, on both backends: the resource (create, list, get, delete,
deliveries, :test), who may see it, what a create refuses (private targets included),
and deliveries a receiver can verify, retried with the same webhook-id."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
import standardwebhooks

from openjules.outbound import refusal
from openjules.settings import Settings, SettingsError, load_settings
from openjules.store.webhooks import MAX_WEBHOOKS_PER_USER
from openjules.testing import LiveServer, ReceivedRequest, WebhookReceiver, provision_user
from tests.conftest import drop_database, fresh_database
from tests.support import api_client, ok_json, walk
from tests.webhook_support import (
    RETRY_SCHEDULE,
    assert_in_order,
    create_webhook,
    delivered,
    deliveries,
    verified,
    wait_for_deliveries,
)

ALL_TYPES = [
    "session.created",
    "session.state_changed",
    "session.completed",
    "session.failed",
    "activity.created",
    "pull_request.opened",
    "webhook.test",
]


@pytest.fixture(scope="module")
def server(server_settings: Settings) -> Iterator[LiveServer]:
    """The receiver is on 127.0.0.1: private targets are allowed here."""
    settings = server_settings.model_copy(
        update={"webhooks_allow_private": True, "webhook_retry_schedule": RETRY_SCHEDULE}
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def strict_server(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The default: private targets refused. A database of its own, so its sender never
    meets the other server's webhooks."""
    tmp = tmp_path_factory.mktemp(f"strict-{backend}")
    admin = request.getfixturevalue("postgres_admin") if backend == "postgresql" else None
    url, created = fresh_database(backend, tmp, admin)
    with LiveServer(Settings(data_dir=tmp, database_url=url, workers=0)) as live:
        yield live
    if created and admin:
        drop_database(admin, created)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def hook_url(receiver: WebhookReceiver) -> str:
    """A receiver path of the test's own, so tests tell their requests apart."""
    receiver.answer(200)
    return f"{receiver.url}/{secrets.token_hex(4)}"


def _to(requests: Iterable[ReceivedRequest], url: str) -> list[ReceivedRequest]:
    path = httpx.URL(url).path
    return [r for r in requests if r.path == path]


def _requests_to(receiver: WebhookReceiver, url: str) -> list[ReceivedRequest]:
    return _to(receiver.requests, url)


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


# --- the resource --------------------------------------------------------------------


def test_create_answers_the_webhook_with_a_secret_that_only_create_shows(
    client: httpx.Client, hook_url: str
) -> None:
    made = create_webhook(
        client,
        hook_url,
        eventTypes=["session.completed", "session.failed"],
        description="CI notifier",
    )
    wid = made["id"]
    assert made["name"] == f"webhooks/{wid}"
    assert made["url"] == hook_url
    assert made["eventTypes"] == ["session.completed", "session.failed"]
    assert made["description"] == "CI notifier"
    assert made["createTime"].endswith("Z")
    secret = made["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    standardwebhooks.Webhook(secret)  # the form the Standard Webhooks libraries take

    shown = {k: v for k, v in made.items() if k != "secret"}
    assert ok_json(client.get(f"/webhooks/{wid}")) == shown
    assert ok_json(client.get("/webhooks")) == {"webhooks": [shown]}


def test_snake_case_input_and_empty_event_types_mean_every_type(
    client: httpx.Client, hook_url: str
) -> None:
    made = create_webhook(client, hook_url, event_types=[])
    assert "eventTypes" not in made  # empty: every type (defaults are omitted)
    assert "description" not in made


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "url", "required"),
        ({"url": "   "}, "url", "required"),
        ({"url": "ftp://example.com/hook"}, "url", "http"),
        ({"url": "https:///nohost"}, "url", "host"),
        ({"url": "https://user:pw@example.com/"}, "url", "password"),
        ({"url": "https://example.com/" + "a" * 3000}, "url", "limit"),
        (
            {"url": "https://example.com/", "eventTypes": ["session.created", "session.exploded"]},
            "event_types[1]",
            "session.exploded",
        ),
        ({"url": "https://example.com/", "description": "d" * 1001}, "description", "limit"),
    ],
)
def test_create_refuses_a_bad_request_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    error = _error(client.post("/webhooks", json=body))
    assert error["status"] == "INVALID_ARGUMENT"
    assert words in error["message"]
    violations = error["details"][0]["fieldViolations"]
    assert [v["field"] for v in violations] == [field]
    assert ok_json(client.get("/webhooks")) == {}


def test_create_refuses_unknown_fields(client: httpx.Client, hook_url: str) -> None:
    error = _error(client.post("/webhooks", json={"url": hook_url, "events": ["x"]}))
    assert error["status"] == "INVALID_ARGUMENT"


def test_a_user_has_at_most_a_fixed_number_of_webhooks(client: httpx.Client, hook_url: str) -> None:
    for _ in range(MAX_WEBHOOKS_PER_USER):
        create_webhook(client, hook_url)
    error = _error(client.post("/webhooks", json={"url": hook_url}))
    assert error["status"] == "FAILED_PRECONDITION"
    assert "delete one" in error["message"]
    listed = walk(client, "/webhooks", "webhooks", {"pageSize": "7"})
    assert len(listed) == MAX_WEBHOOKS_PER_USER


def test_list_is_newest_first_over_pages(client: httpx.Client, hook_url: str) -> None:
    made = [create_webhook(client, hook_url, description=f"n{i}")["id"] for i in range(5)]
    listed = walk(client, "/webhooks", "webhooks", {"pageSize": "2"})
    assert [w["id"] for w in listed] == made[::-1]
    assert all("secret" not in w for w in listed)
    assert _error(client.get("/webhooks", params={"pageToken": "bogus"}))["status"] == (
        "INVALID_ARGUMENT"
    )
    assert _error(client.get("/webhooks", params={"filter": "url = x"}))["status"] == (
        "INVALID_ARGUMENT"
    )


def test_delete_removes_it(client: httpx.Client, hook_url: str) -> None:
    wid = create_webhook(client, hook_url)["id"]
    assert ok_json(client.delete(f"/webhooks/{wid}")) == {}
    assert _error(client.get(f"/webhooks/{wid}"), 404)["status"] == "NOT_FOUND"
    assert _error(client.delete(f"/webhooks/{wid}"), 404)["status"] == "NOT_FOUND"
    assert ok_json(client.get("/webhooks")) == {}


def test_unknown_ids_and_verbs_are_not_found(client: httpx.Client) -> None:
    for path in ("/webhooks/nope", "/webhooks/" + "0" * 32, "/webhooks/" + "A" * 32):
        assert client.get(path).status_code == 404, path
    assert _error(client.post("/webhooks/" + "0" * 32 + ":test"), 404)["status"] == "NOT_FOUND"
    error = _error(client.post("/webhooks/" + "0" * 32 + ":explode"), 404)
    assert "explode" in error["message"]


def test_another_user_can_neither_see_nor_touch_my_webhooks(
    server: LiveServer, client: httpx.Client, hook_url: str, receiver: WebhookReceiver
) -> None:
    mine = create_webhook(client, hook_url)["id"]
    other_key = provision_user(server.settings, name=f"other-{secrets.token_hex(4)}")
    with api_client(server.api, other_key) as other:
        assert ok_json(other.get("/webhooks")) == {}
        for response in (
            other.get(f"/webhooks/{mine}"),
            other.delete(f"/webhooks/{mine}"),
            other.get(f"/webhooks/{mine}/deliveries"),
            other.post(f"/webhooks/{mine}:test"),
        ):
            assert _error(response, 404)["status"] == "NOT_FOUND"
        # Their sessions are not reported to my webhook.
        assert other.post("/sessions", json={"prompt": "theirs"}).status_code == 200
    assert ok_json(client.get(f"/webhooks/{mine}"))["id"] == mine
    # Mine are: my session's event arrives, theirs never did (events go in id order).
    sid = ok_json(client.post("/sessions", json={"prompt": "mine"}))["id"]
    got = receiver.wait_for(lambda rs: bool(delivered(_to(rs, hook_url))))
    bodies = [r.json() for r in delivered(_to(got, hook_url)).values()]
    assert [b["data"]["session"]["id"] for b in bodies] == [sid]


# --- private targets -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fc00::5]/",
        "http://224.0.0.1/",
    ],
)
def test_private_targets_are_refused_unless_the_operator_allows_them(
    strict_server: LiveServer, url: str
) -> None:
    key = provision_user(strict_server.settings, name=f"strict-{secrets.token_hex(4)}")
    with api_client(strict_server.api, key) as client:
        error = _error(client.post("/webhooks", json={"url": url}))
        assert error["status"] == "INVALID_ARGUMENT"
        assert "OPENJULES_WEBHOOKS_ALLOW_PRIVATE" in error["message"]
        assert error["details"][0]["fieldViolations"][0]["field"] == "url"
        assert ok_json(client.get("/webhooks")) == {}


def test_a_host_that_does_not_resolve_is_refused(strict_server: LiveServer) -> None:
    key = provision_user(strict_server.settings, name=f"strict-{secrets.token_hex(4)}")
    with api_client(strict_server.api, key) as client:
        error = _error(client.post("/webhooks", json={"url": "https://no-such-host.invalid/"}))
        assert "does not resolve" in error["message"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.2", False),
        ("10.0.0.1", False),
        ("100.127.255.254", False),
        ("169.254.169.254", False),
        ("198.18.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.215.14", True),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("fd00:ec2::254", False),
        ("ff02::1", False),
    ],
)
def test_which_addresses_a_webhook_may_reach(address: str, allowed: bool) -> None:
    assert (refusal(ipaddress.ip_address(address)) is None) is allowed


# --- deliveries ----------------------------------------------------------------------


def test_test_event_is_signed_retried_with_the_same_id_and_listed(
    client: httpx.Client, receiver: WebhookReceiver, hook_url: str
) -> None:
    made = create_webhook(client, hook_url, eventTypes=["session.completed"])
    wid = made["id"]
    receiver.answer(500, times=2)
    assert ok_json(client.post(f"/webhooks/{wid}:test")) == {}

    got = receiver.wait_for(lambda rs: len(delivered(_to(rs, hook_url))) == 1)
    mine = _requests_to(receiver, hook_url)
    assert [r.status for r in mine] == [500, 500, 200]
    assert len({r.headers["webhook-id"] for r in mine}) == 1
    assert len(got) >= 3
    for body in verified(made["secret"], mine):
        assert body["type"] == "webhook.test"
        assert body["data"] == {"webhook": f"webhooks/{wid}"}
        assert body["timestamp"].endswith("Z")
    first = mine[0]
    assert first.method == "POST"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"].startswith("openjules-webhooks/")
    assert first.headers["webhook-signature"].startswith("v1,")
    # Another secret does not verify.
    other = standardwebhooks.Webhook(base64.b64encode(b"x" * 32).decode())
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        other.verify(first.body, first.headers)

    listed = wait_for_deliveries(client, wid, 3)
    message_id = first.headers["webhook-id"]
    assert [(d["webhookId"], d["eventType"], d["attempt"]) for d in listed] == [
        (message_id, "webhook.test", 3),
        (message_id, "webhook.test", 2),
        (message_id, "webhook.test", 1),
    ]
    assert [d.get("status") for d in listed] == [200, 500, 500]
    assert "error" not in listed[0]
    assert "500" in listed[1]["error"]
    assert listed[0]["time"] >= listed[1]["time"] >= listed[2]["time"]


def test_a_delivery_that_keeps_failing_is_given_up_after_the_schedule(
    client: httpx.Client, receiver: WebhookReceiver, hook_url: str
) -> None:
    wid = create_webhook(client, hook_url)["id"]
    receiver.answer(503)
    client.post(f"/webhooks/{wid}:test")
    attempts = len(RETRY_SCHEDULE.split(",")) + 1
    listed = wait_for_deliveries(client, wid, attempts)
    assert [d["attempt"] for d in listed] == list(range(attempts, 0, -1))
    assert {d["status"] for d in listed} == {503}
    # The next event is delivered once the receiver recovers; the failed one is not tried
    # again.
    receiver.answer(200)
    client.post(f"/webhooks/{wid}:test")
    listed = wait_for_deliveries(client, wid, attempts + 1)
    assert (listed[0]["attempt"], listed[0]["status"]) == (1, 200)
    assert len(deliveries(client, wid)) == attempts + 1


def test_a_redirect_is_not_followed(
    client: httpx.Client, receiver: WebhookReceiver, hook_url: str
) -> None:
    wid = create_webhook(client, hook_url)["id"]
    receiver.answer(307, times=1)
    client.post(f"/webhooks/{wid}:test")
    listed = wait_for_deliveries(client, wid, 2)
    assert [d.get("status") for d in listed] == [200, 307]
    assert "redirect" in listed[1]["error"]


def test_a_receiver_that_is_gone_is_an_error_without_status(client: httpx.Client) -> None:
    with WebhookReceiver() as gone:
        url = gone.url
    wid = create_webhook(client, url)["id"]
    client.post(f"/webhooks/{wid}:test")
    listed = wait_for_deliveries(client, wid, 1)
    assert "status" not in listed[0]
    assert listed[0]["error"]


def test_session_events_reach_the_webhooks_that_asked_for_them_in_order(
    client: httpx.Client, receiver: WebhookReceiver, hook_url: str
) -> None:
    everything = create_webhook(client, hook_url + "/all")
    created_only = create_webhook(client, hook_url + "/created", eventTypes=["session.created"])
    receiver.answer(500, times=3)
    sid = ok_json(client.post("/sessions", json={"prompt": "Watch me"}))["id"]
    for text in ("one", "two"):
        client.post(f"/sessions/{sid}:sendMessage", json={"prompt": text})
    client.post(f"/sessions/{sid}:archive")  # no event type reports an archive

    receiver.wait_for(lambda rs: len(delivered(_to(rs, hook_url + "/all"))) >= 3)
    receiver.wait_for(lambda rs: len(delivered(_to(rs, hook_url + "/created"))) >= 1)
    all_requests = _requests_to(receiver, hook_url + "/all")
    bodies = verified(everything["secret"], all_requests)
    assert_in_order(all_requests)
    firsts = {r.headers["webhook-id"]: b for r, b in zip(all_requests, bodies, strict=True)}
    events = list(firsts.values())
    assert [e["type"] for e in events] == [
        "session.created",
        "activity.created",
        "activity.created",
    ]
    session = events[0]["data"]["session"]
    assert (session["id"], session["state"]) == (sid, "QUEUED")
    assert session["url"].endswith(f"/session/{sid}")
    assert "archived" not in session  # the snapshot of creation, not of now
    activities = ok_json(client.get(f"/sessions/{sid}/activities"))["activities"]
    assert [e["data"] for e in events[1:]] == [
        {"session": f"sessions/{sid}", "activity": a} for a in activities
    ]

    created = _requests_to(receiver, hook_url + "/created")
    assert [b["type"] for b in verified(created_only["secret"], delivered(created).values())] == [
        "session.created"
    ]
    # Each webhook has its own ids and secret.
    assert not set(delivered(created)) & set(firsts)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verified(everything["secret"], created[:1])


def test_every_event_type_is_accepted(client: httpx.Client, hook_url: str) -> None:
    made = create_webhook(client, hook_url, eventTypes=ALL_TYPES)
    assert made["eventTypes"] == ALL_TYPES


# --- the retry schedule --------------------------------------------------------------


def test_the_retry_schedule_takes_decimals_and_units() -> None:
    settings = load_settings({"webhook_retry_schedule": "200ms, 1.5s,2m,.5h"})
    assert settings.webhook_retry_delays() == (0.2, 1.5, 120.0, 1800.0)
    default = Settings().webhook_retry_delays()
    assert len(default) == 11
    assert 31 * 3600 < sum(default) < 33 * 3600  # about 32 hours


@pytest.mark.parametrize("schedule", ["5", "5x", "1s,,2s", "-1s", "1 s"])
def test_a_bad_retry_schedule_stops_the_command_naming_it(schedule: str) -> None:
    with pytest.raises(SettingsError, match=r"OPENJULES_WEBHOOK_RETRY_SCHEDULE=.* is not a delay"):
        load_settings({"webhook_retry_schedule": schedule})


def test_a_named_host_is_requested_with_its_name_in_the_host_header(
    client: httpx.Client, receiver: WebhookReceiver, hook_url: str
) -> None:
    """The request goes to the address that was checked, and still names the host."""
    named = hook_url.replace("127.0.0.1", "localhost")
    wid = create_webhook(client, named)["id"]
    client.post(f"/webhooks/{wid}:test")
    (request,) = receiver.wait_for(lambda rs: bool(_to(rs, named)))[-1:]
    assert request.headers["host"] == f"localhost:{httpx.URL(named).port}"
