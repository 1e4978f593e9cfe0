"""The server answers on both backends with the shapes clients depend on."""

from __future__ import annotations

import httpx


def test_create_then_get_roundtrip(client: httpx.Client) -> None:
    created = client.post("/sessions", json={"prompt": "Add a CHANGELOG"})
    assert created.status_code == 200
    body = created.json()
    assert body["state"] == "QUEUED"
    assert body["title"] == "Add a CHANGELOG"
    fetched = client.get(f"/sessions/{body['id']}").json()
    assert fetched == body
