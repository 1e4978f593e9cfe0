"""Webhook deliveries verify with the Standard Webhooks libraries a receiver would use:
``standardwebhooks`` on PyPI and on npm, exactly as the README shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from openjules.settings import Settings
from openjules.testing import LiveServer, WebhookReceiver
from tests.compat.conftest import NodeRunner
from tests.support import api_client

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def server(server_settings: Settings) -> Iterator[LiveServer]:
    # The receiver listens on loopback.
    settings = server_settings.model_copy(update={"webhooks_allow_private": True})
    with LiveServer(settings) as live:
        yield live


def test_deliveries_verify_in_python_and_node(
    server: LiveServer, api_key: str, node_runner: NodeRunner, tmp_path: Path
) -> None:
    with WebhookReceiver() as receiver, api_client(server.api, api_key) as client:
        created = client.post("/webhooks", json={"url": receiver.url})
        assert created.status_code == 200, created.text
        hook = created.json()
        # Two events: a session created (the server runs no agent, so it stays queued) and
        # a test event.
        assert client.post("/sessions", json={"prompt": "Verify me"}).status_code == 200
        assert client.post(f"/webhooks/{hook['id']}:test").status_code == 200
        got = receiver.wait_for(lambda requests: len(requests) >= 2)

    for request in got:
        event = Webhook(hook["secret"]).verify(request.body, request.headers)
        assert event["type"] in ("session.created", "webhook.test")
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(got[0].body + b" ", got[0].headers)

    deliveries = tmp_path / "deliveries.json"
    deliveries.write_text(
        json.dumps([{"headers": r.headers, "body": r.body.decode()} for r in got])
    )
    seen = node_runner.run(
        "verify_webhooks.mjs",
        server=server,
        api_key=api_key,
        DELIVERIES=str(deliveries),
        SECRET=hook["secret"],
    )
    assert seen["verified"] == len(got)
    assert sorted(seen["types"]) == sorted(r.json()["type"] for r in got)
    assert seen["tamperedRejected"] is True
    assert seen["wrongSecretRejected"] is True
