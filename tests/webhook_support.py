"""Reading what a webhook receiver got: signatures, events by id, the order per session."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
import standardwebhooks

from openjules.testing import ReceivedRequest
from tests.support import walk

# Fast retries, so tests see several attempts (and the last) without waiting.
RETRY_SCHEDULE = "200ms,200ms,500ms"
# Fast too, but more retries than a test's outage lasts: no event is given up.
PATIENT_SCHEDULE = ",".join(["200ms"] * 12)
PATIENT_ENV = {
    "OPENJULES_WEBHOOKS_ALLOW_PRIVATE": "true",
    "OPENJULES_WEBHOOK_RETRY_SCHEDULE": PATIENT_SCHEDULE,
}


def create_webhook(client: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/webhooks", json={"url": url, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def verified(secret: str, requests: Iterable[ReceivedRequest]) -> list[dict[str, Any]]:
    """Each request's body, after ``standardwebhooks`` verified its signature."""
    signer = standardwebhooks.Webhook(secret)
    return [signer.verify(r.body, r.headers) for r in requests]


def delivered(requests: Iterable[ReceivedRequest]) -> dict[str, ReceivedRequest]:
    """The requests answered 2xx, by webhook-id (the first one of each)."""
    found: dict[str, ReceivedRequest] = {}
    for r in requests:
        if 200 <= r.status < 300:
            found.setdefault(r.headers["webhook-id"], r)
    return found


def session_of(request: ReceivedRequest) -> str | None:
    session = request.json()["data"].get("session")
    if isinstance(session, dict):
        return str(session["id"])
    if isinstance(session, str):
        return session.removeprefix("sessions/")
    return None


def assert_in_order(requests: list[ReceivedRequest]) -> dict[str, list[str]]:
    """Per session, every attempt at an event comes after the success of the one before:
    its requests form one block per webhook-id, each ending in a 2xx, and a retry
    carries the same id and body. Returns each session's webhook-ids in delivery order."""
    blocks: dict[str, list[list[ReceivedRequest]]] = {}
    for r in requests:
        sid = session_of(r)
        if sid is None:
            continue
        runs = blocks.setdefault(sid, [])
        if runs and runs[-1][0].headers["webhook-id"] == r.headers["webhook-id"]:
            runs[-1].append(r)
        else:
            runs.append([r])
    order: dict[str, list[str]] = {}
    for sid, runs in blocks.items():
        ids = [run[0].headers["webhook-id"] for run in runs]
        assert len(ids) == len(set(ids)), f"session {sid}: an event was retried out of order"
        for run in runs[:-1]:
            assert 200 <= run[-1].status < 300, f"session {sid}: a later event went first"
        for run in runs:
            assert {r.body for r in run} == {run[0].body}, "a retry changed the body"
        order[sid] = ids
    return order


def deliveries(client: httpx.Client, webhook_id: str) -> list[dict[str, Any]]:
    """Every delivery attempt the API lists, newest first (two per page)."""
    return walk(client, f"/webhooks/{webhook_id}/deliveries", "deliveries", {"pageSize": "2"})


def wait_for_deliveries(
    client: httpx.Client, webhook_id: str, count: int, *, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The listed attempts, once there are at least ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(client, webhook_id)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} attempts listed, not {count}"
        time.sleep(0.05)
