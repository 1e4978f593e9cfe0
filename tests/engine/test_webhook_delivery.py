"""Webhooks end to end, on both backends: a real agent run (fake model, real git and
bubblewrap, the fake GitHub opening the pull request) reported to a real receiver that
fails for a while and then recovers; `openjules serve` killed with deliveries pending and
started again; the delivery-time check of the target."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import CreateWebhookRequest
from openjules.settings import Settings
from openjules.store import users, webhook_outbox, webhooks
from openjules.store.migrate import upgrade_to_head
from openjules.store.oneshot import run_write
from openjules.store.webhooks import WebhookRecord
from openjules.testing import (
    FakeGitHub,
    FakeModel,
    LiveServer,
    Reply,
    WebhookReceiver,
    provision_user,
    register_github_source,
)
from tests.cli.support import ServeProcess, Target
from tests.conftest import drop_database, fresh_database
from tests.engine.agent_support import call, needs_bubblewrap
from tests.engine.worker_support import Worker
from tests.support import TERMINAL, api_client, ok_json, wait_for_state, walk
from tests.webhook_support import (
    PATIENT_ENV,
    PATIENT_SCHEDULE,
    assert_in_order,
    create_webhook,
    delivered,
    verified,
    wait_for_deliveries,
)

TOKEN = "ghp_" + secrets.token_hex(16)
WORK = [
    call("propose_plan", steps=[{"title": "Greet", "description": "Edit app.py."}]),
    call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
    call("finish", summary="The app greets the world.", commit_message="Greet the world"),
]
# Three replies without a tool: the session fails (see test_agent_faults).
IDLE = [Reply(content="I would rather chat.")] * 3


@pytest.fixture
def github(tmp_path: Path, repo: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(tmp_path / "github", token=TOKEN) as fake:
        fake.add_repo("acme", "greeter", from_path=repo)
        yield fake


@pytest.fixture
def agent_settings_overrides(github: FakeGitHub) -> dict[str, Any]:
    return {
        "github_api_url": github.api_url,
        "github_token": TOKEN,
        "webhooks_allow_private": True,
        "webhook_retry_schedule": PATIENT_SCHEDULE,
    }


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def _events_of(bodies: list[dict[str, Any]], sid: str) -> list[dict[str, Any]]:
    def about(body: dict[str, Any]) -> str | None:
        session = body["data"].get("session")
        return session.get("id") if isinstance(session, dict) else session

    return [b for b in bodies if about(b) in (sid, f"sessions/{sid}")]


def _assert_story(events: list[dict[str, Any]], activities: list[dict[str, Any]], end: str) -> None:
    """One session's events, in delivery order, tell what happened to it."""
    assert events[0]["type"] == "session.created"
    assert events[0]["data"]["session"]["state"] == "QUEUED"
    assert events[-1]["type"] == f"session.{end.lower()}"
    assert events[-1]["data"]["session"]["state"] == end
    reported = [e["data"] for e in events if e["type"] == "activity.created"]
    sid = events[0]["data"]["session"]["id"]
    assert reported == [{"session": f"sessions/{sid}", "activity": a} for a in activities]
    # Each state change starts where the one before ended: the snapshot is of its time.
    state = "QUEUED"
    for event in (e for e in events if e["type"] == "session.state_changed"):
        assert event["data"]["previousState"] == state
        state = event["data"]["session"]["state"]
        assert state != event["data"]["previousState"]
    assert state == end


@needs_bubblewrap
def test_every_event_of_a_real_run_arrives_signed_in_order_despite_failures(
    client: httpx.Client,
    agent_server: LiveServer,
    fake_model: FakeModel,
    github: FakeGitHub,
    receiver: WebhookReceiver,
) -> None:
    source = register_github_source(agent_server.settings, owner="acme", repo="greeter")
    hook = create_webhook(client, receiver.url)
    receiver.answer(500, times=6)  # down for a while, then back

    fake_model.push(*WORK)
    done = ok_json(
        client.post(
            "/sessions",
            json={
                "prompt": "Make the app greet the world",
                "sourceContext": {
                    "source": source,
                    "githubRepoContext": {"startingBranch": "main"},
                },
                "automationMode": "AUTO_CREATE_PR",
            },
        )
    )["id"]
    assert wait_for_state(client, done, TERMINAL)["state"] == "COMPLETED"
    fake_model.push(*IDLE)
    failed = ok_json(client.post("/sessions", json={"prompt": "Just chat"}))["id"]
    assert wait_for_state(client, failed, TERMINAL)["state"] == "FAILED"
    assert ok_json(client.post(f"/webhooks/{hook['id']}:test")) == {}

    def everything_arrived(requests: list[Any]) -> bool:
        types = [r.json()["type"] for r in delivered(requests).values()]
        return {"session.completed", "session.failed", "webhook.test"} <= set(types)

    requests = receiver.wait_for(everything_arrived, timeout=60)
    bodies = verified(hook["secret"], requests)  # every attempt, retries included
    assert any(r.status == 500 for r in requests)
    order = assert_in_order(requests)
    firsts = {r.headers["webhook-id"]: r.json() for r in delivered(requests).values()}
    assert {b["type"] for b in bodies} == {
        "session.created",
        "session.state_changed",
        "session.completed",
        "session.failed",
        "activity.created",
        "pull_request.opened",
        "webhook.test",
    }

    for sid, end in ((done, "COMPLETED"), (failed, "FAILED")):
        events = [firsts[message_id] for message_id in order[sid]]
        assert events == _events_of(list(firsts.values()), sid)
        activities = walk(client, f"/sessions/{sid}/activities", "activities")
        _assert_story(events, activities, end)
        session = ok_json(client.get(f"/sessions/{sid}"))
        assert events[-1]["data"]["session"] == session
        assert session["url"] == f"{agent_server.url}/session/{sid}"

    opened = [b for b in firsts.values() if b["type"] == "pull_request.opened"]
    assert len(opened) == 1
    pull = opened[0]["data"]["pullRequest"]
    assert pull["url"] == f"{github.url}/acme/greeter/pull/1"
    assert opened[0]["data"]["session"]["id"] == done
    completed = ok_json(client.get(f"/sessions/{done}"))
    assert {"pullRequest": pull} in completed["outputs"]

    # The API lists every attempt the receiver saw (once the last one is recorded).
    listed = wait_for_deliveries(client, hook["id"], len(requests))
    assert sorted((d["webhookId"], d["attempt"]) for d in listed) == sorted(
        (r.headers["webhook-id"], n)
        for message_id in {r.headers["webhook-id"] for r in requests}
        for n, r in enumerate(
            (r for r in requests if r.headers["webhook-id"] == message_id), start=1
        )
    )


# --- kill -9 with deliveries pending -------------------------------------------------


@pytest.fixture
def target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Target]:
    data_dir = tmp_path / "data"
    admin = request.getfixturevalue("postgres_admin") if backend == "postgresql" else None
    url, created = fresh_database(backend, data_dir, admin)
    home = tmp_path / "home"
    home.mkdir()
    yield Target(
        backend=backend,
        home=home,
        data_dir=data_dir,
        database_url=url if created else None,
        # Attempts end within 2 s, so a dead server's leases expire 7 s later.
        extra_env={**PATIENT_ENV, "OPENJULES_WEBHOOK_TIMEOUT_SECONDS": "2"},
    )
    if created and admin:
        drop_database(admin, created)


def test_kill_9_with_deliveries_pending_loses_nothing(
    target: Target, receiver: WebhookReceiver
) -> None:
    logs = target.home / "logs"
    with ServeProcess(target, log_dir=logs) as first:
        key = first.printed_key()
        assert key is not None, first.output()
        with first.client(key) as client:
            hook = create_webhook(client, receiver.url)
            # Slow failures: deliveries are in flight (leased) when the server dies.
            receiver.answer(500, delay=0.3)
            sids = [
                ok_json(client.post("/sessions", json={"prompt": f"task {n}"}))["id"]
                for n in range(4)
            ]
            for sid in sids:
                sent = client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "more"})
                assert sent.status_code == 200, sent.text
            receiver.wait_for(lambda rs: len(rs) >= 6)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not delivered(receiver.requests)

    receiver.answer(200)
    with ServeProcess(target, log_dir=logs, port=first.port) as second:
        # Two events per session: created, and the message's activity.
        requests = receiver.wait_for(lambda rs: len(delivered(rs)) >= 2 * len(sids), timeout=60)
        with second.client(key) as client:
            activities = {
                sid: walk(client, f"/sessions/{sid}/activities", "activities") for sid in sids
            }
        second.terminate_cleanly()
    verified(hook["secret"], requests)
    order = assert_in_order(requests)
    firsts = {r.headers["webhook-id"]: r.json() for r in delivered(requests).values()}
    assert len(firsts) == 2 * len(sids)
    for sid in sids:
        events = [firsts[message_id] for message_id in order[sid]]
        assert [e["type"] for e in events] == ["session.created", "activity.created"]
        assert events[1]["data"]["activity"] == activities[sid][0]


# --- the target is checked again at delivery ---------------------------------------


def test_a_private_target_is_refused_at_delivery_when_no_longer_allowed(
    server_settings: Settings, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Created while private targets were allowed; the server that delivers does not
    allow them (as when DNS moved a public name to a private address): it does not send."""
    lenient = server_settings.model_copy(
        update={"data_dir": tmp_path / "a", "webhooks_allow_private": True}
    )
    with LiveServer(lenient) as live:
        key = provision_user(live.settings, name=f"u-{secrets.token_hex(4)}")
        with api_client(live.api, key) as client:
            hook = create_webhook(client, f"{receiver.url}/{secrets.token_hex(4)}")
    strict = server_settings.model_copy(update={"data_dir": tmp_path / "b"})
    with LiveServer(strict) as live, api_client(live.api, key) as client:
        client.post(f"/webhooks/{hook['id']}:test")
        (attempt,) = wait_for_deliveries(client, hook["id"], 1)[:1]
        assert "status" not in attempt
        assert "loopback" in attempt["error"]
    assert not [r for r in receiver.requests if r.path == httpx.URL(hook["url"]).path]


def test_a_receiver_that_does_not_answer_costs_at_most_the_timeout(
    server_settings: Settings, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "webhooks_allow_private": True,
            "webhook_retry_schedule": "100ms",
            "webhook_timeout_seconds": 0.5,
        }
    )
    with LiveServer(settings) as live:
        key = provision_user(live.settings, name=f"u-{secrets.token_hex(4)}")
        with api_client(live.api, key) as client:
            url = f"{receiver.url}/{secrets.token_hex(4)}"
            hook = create_webhook(client, url)
            receiver.answer(200, delay=3)  # holds every request well past the timeout
            client.post(f"/webhooks/{hook['id']}:test")
            listed = wait_for_deliveries(client, hook["id"], 2)
            receiver.answer(200)
    assert [d["attempt"] for d in listed] == [2, 1]
    for attempt in listed:
        assert "status" not in attempt
        assert attempt["error"] == "no answer within 0.5 s"


def test_an_openjules_worker_delivers_events_too(
    server_settings: Settings, receiver: WebhookReceiver, fake_model: FakeModel, tmp_path: Path
) -> None:
    """No API process runs here: the `openjules worker` process is the only sender."""
    url = server_settings.resolved_database_url()
    upgrade_to_head(url)
    hook_url = f"{receiver.url}/{secrets.token_hex(4)}"

    async def queue_test_event(conn: AsyncConnection) -> WebhookRecord:
        user = await users.get_or_create_user(conn, name=f"w-{secrets.token_hex(4)}")
        new = webhooks.validate(CreateWebhookRequest(url=hook_url))
        hook = await webhooks.create(conn, owner_id=user.id, webhook=new)
        await webhook_outbox.record_test(conn, webhook_id=hook.id)
        return hook

    hook = run_write(url, queue_test_event)
    worker = Worker(
        settings=server_settings, model=fake_model, home=tmp_path / "worker", extra_env=PATIENT_ENV
    )
    try:
        got = receiver.wait_for(lambda rs: any(r.path == httpx.URL(hook_url).path for r in rs))
    finally:
        worker.stop()
    (request,) = [r for r in got if r.path == httpx.URL(hook_url).path]
    (body,) = verified(hook.secret, [request])
    assert body["data"] == {"webhook": f"webhooks/{hook.id}"}
