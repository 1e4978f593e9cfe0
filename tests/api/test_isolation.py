"""One user's sessions and activities are invisible to another user: every route says 404."""

from __future__ import annotations

import secrets

import httpx

from openjules.testing import LiveServer, provision_user
from tests import driver
from tests.api.session_support import create_session, expect_error
from tests.support import api_client, list_activities, ok_json


def test_another_user_cannot_see_or_touch_a_session(
    client: httpx.Client, server: LiveServer
) -> None:
    sid = create_session(client, prompt="private work")["id"]
    driver.propose_plan(server.settings, sid, steps=["a"], require_approval=True)
    activity = list_activities(client, sid)[0]

    other_key = provision_user(server.settings, name=f"other-{secrets.token_hex(4)}")
    with api_client(server.api, other_key) as other:
        mine = create_session(other, prompt="other's own")["id"]
        # Lists show only the caller's sessions, with or without filters.
        for params in ({}, {"filter": "archived = true OR archived = false"},
                       {"filter": "state = AWAITING_PLAN_APPROVAL"}):
            listed = ok_json(other.get("/sessions", params=params))
            assert sid not in [s["id"] for s in listed.get("sessions", [])]
        # Every route on the first user's session answers exactly as for a missing one.
        for response in (
            other.get(f"/sessions/{sid}"),
            other.delete(f"/sessions/{sid}"),
            other.post(f"/sessions/{sid}:sendMessage", json={"prompt": "hijack"}),
            other.post(f"/sessions/{sid}:approvePlan"),
            other.post(f"/sessions/{sid}:archive"),
            other.post(f"/sessions/{sid}:unarchive"),
            other.get(f"/sessions/{sid}/activities"),
            other.get(f"/sessions/{sid}/activities", params={"createTime": activity["createTime"]}),
            other.get(f"/{activity['name']}"),
            # An activity id under the caller's own session does not leak either.
            other.get(f"/sessions/{mine}/activities/{activity['id']}"),
        ):
            error = expect_error(response, 404, "NOT_FOUND")
            assert error["message"] == "Requested entity was not found."

    # Nothing the other user tried had an effect.
    after = ok_json(client.get(f"/sessions/{sid}"))
    assert after["state"] == "AWAITING_PLAN_APPROVAL"
    assert "archived" not in after
    assert list_activities(client, sid) == [activity]
    assert [s["id"] for s in ok_json(client.get("/sessions"))["sessions"]] == [sid]
