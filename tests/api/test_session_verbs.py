"""Custom verbs: ``POST /v1alpha/sessions/{id}:sendMessage|approvePlan|archive|unarchive``,
and our extensions ``:cancel|pause|resume``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer, provision_user
from tests import driver
from tests.api.session_support import (
    HEX_ID,
    create_session,
    expect_error,
    field_violations,
    micros,
)
from tests.support import MISSING_SESSION_ID, api_client, kinds, list_activities, ok_json

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def shared(server: LiveServer) -> Iterator[httpx.Client]:
    """One user for the whole module, for tests that only look at errors."""
    with api_client(server.api, provision_user(server.settings, name="verbs-shared")) as c:
        yield c


def state_of(client: httpx.Client, session_id: str) -> str:
    state: str = ok_json(client.get(f"/sessions/{session_id}"))["state"]
    return state


# --- routing of ':verb' ---------------------------------------------------------------


@pytest.mark.parametrize("colon", [":", "%3A", "%3a"])
def test_verbs_accept_literal_and_escaped_colons(shared: httpx.Client, colon: str) -> None:
    sid = create_session(shared)["id"]
    response = shared.post(f"/sessions/{sid}{colon}archive")
    assert colon.encode() in response.request.url.raw_path
    assert ok_json(response)["archived"] is True
    assert "archived" not in ok_json(shared.post(f"/sessions/{sid}{colon}unarchive"))
    assert ok_json(shared.post(f"/sessions/{sid}{colon}sendMessage", json={"prompt": "hi"})) == {}
    expect_error(shared.post(f"/sessions/{sid}{colon}approvePlan"), 400, "FAILED_PRECONDITION")


@pytest.mark.parametrize("verb", ["frobnicate", "approveplan", "SENDMESSAGE", "archive2", ""])
def test_unknown_verb_is_not_found(shared: httpx.Client, verb: str) -> None:
    sid = create_session(shared)["id"]
    expect_error(shared.post(f"/sessions/{sid}:{verb}", json={}), 404, "NOT_FOUND")
    # Nothing happened to the session.
    assert ok_json(shared.get(f"/sessions/{sid}"))["state"] == "QUEUED"
    assert list_activities(shared, sid) == []


def test_post_to_a_session_without_a_verb_is_not_found(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    expect_error(client.post(f"/sessions/{sid}", json={}), 404, "NOT_FOUND")


VERBS = ["approvePlan", "sendMessage", "archive", "unarchive", "cancel", "pause", "resume"]


@pytest.mark.parametrize("verb", VERBS)
def test_slash_form_of_a_verb_is_not_found(shared: httpx.Client, verb: str) -> None:
    sid = create_session(shared)["id"]
    response = shared.post(f"/sessions/{sid}/{verb}", json={"prompt": "hi"})
    expect_error(response, 404, "NOT_FOUND")
    assert "archived" not in ok_json(shared.get(f"/sessions/{sid}"))
    assert list_activities(shared, sid) == []


@pytest.mark.parametrize("verb", VERBS)
def test_verbs_on_an_unknown_session_are_not_found(shared: httpx.Client, verb: str) -> None:
    response = shared.post(f"/sessions/{MISSING_SESSION_ID}:{verb}", json={"prompt": "hi"})
    expect_error(response, 404, "NOT_FOUND")
    response = shared.post(f"/sessions/not-a-number:{verb}", json={"prompt": "hi"})
    expect_error(response, 404, "NOT_FOUND")


# --- request bodies -------------------------------------------------------------------

# The three ways clients send a body to approvePlan/archive/unarchive (jules-api.md §16.8).
BODIES: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
    # jules-agent-sdk: no body and no Content-Type.
    "absent": lambda c, url: c.post(url),
    # jules-api, jules-cli: Content-Type application/json with an empty body.
    "empty-json": lambda c, url: c.post(url, content=b"", headers=JSON),
    # TS SDK, junes: {}.
    "object": lambda c, url: c.post(url, json={}),
}


@pytest.mark.parametrize("style", sorted(BODIES))
def test_archive_and_unarchive_accept_every_body_style(shared: httpx.Client, style: str) -> None:
    send = BODIES[style]
    sid = create_session(shared)["id"]
    response = send(shared, f"/sessions/{sid}:archive")
    assert ok_json(response)["archived"] is True
    assert "archived" not in ok_json(send(shared, f"/sessions/{sid}:unarchive"))


@pytest.mark.parametrize("style", sorted(BODIES))
def test_approve_plan_accepts_every_body_style(
    shared: httpx.Client, server: LiveServer, style: str
) -> None:
    sid = create_session(shared)["id"]
    driver.propose_plan(server.settings, sid, steps=["one"], require_approval=True)
    response = BODIES[style](shared, f"/sessions/{sid}:approvePlan")
    assert ok_json(response) == {}
    assert state_of(shared, sid) == "IN_PROGRESS"


def test_send_message_with_empty_json_content_type_still_needs_a_prompt(
    shared: httpx.Client,
) -> None:
    sid = create_session(shared)["id"]
    error = expect_error(
        shared.post(f"/sessions/{sid}:sendMessage", content=b"", headers=JSON),
        400,
        "INVALID_ARGUMENT",
    )
    assert field_violations(error) == ["prompt"]


@pytest.mark.parametrize(
    "body",
    [None, {}, {"prompt": ""}, {"prompt": "  \n"}, {"prompt": None}],
    ids=["absent", "empty-object", "empty", "blank", "null"],
)
def test_send_message_requires_a_prompt(shared: httpx.Client, body: dict[str, Any] | None) -> None:
    sid = create_session(shared)["id"]
    response = shared.post(f"/sessions/{sid}:sendMessage", json=body)
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert field_violations(error) == ["prompt"]
    assert list_activities(shared, sid) == []


@pytest.mark.parametrize(
    "raw",
    [b'{"message": "hi"}', b'{"prompt": 5}', b"{", b'["hi"]', b'"hi"'],
    ids=["wrong-field-name", "number", "malformed", "array", "string"],
)
def test_send_message_rejects_bad_bodies(shared: httpx.Client, raw: bytes) -> None:
    sid = create_session(shared)["id"]
    response = shared.post(f"/sessions/{sid}:sendMessage", content=raw, headers=JSON)
    expect_error(response, 400, "INVALID_ARGUMENT")
    assert list_activities(shared, sid) == []


@pytest.mark.parametrize(
    "verb", ["approvePlan", "archive", "unarchive", "cancel", "pause", "resume"]
)
def test_bodyless_verbs_reject_malformed_json(shared: httpx.Client, verb: str) -> None:
    sid = create_session(shared)["id"]
    response = shared.post(f"/sessions/{sid}:{verb}", content=b"{", headers=JSON)
    expect_error(response, 400, "INVALID_ARGUMENT")


# --- sendMessage ----------------------------------------------------------------------


def test_send_message_answers_exactly_an_empty_object(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    response = client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Also add tests"})
    assert response.status_code == 200
    assert response.content == b"{}"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == "2"
    assert "transfer-encoding" not in response.headers


def test_send_message_appends_a_user_messaged_activity(client: httpx.Client) -> None:
    session = create_session(client)
    sid = session["id"]
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Also add tests"}))
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "  and docs  "}))
    activities = list_activities(client, sid)
    assert [a["userMessaged"] for a in activities] == [
        {"userMessage": "Also add tests"},
        {"userMessage": "  and docs  "},
    ]
    assert all(a["originator"] == "user" for a in activities)
    assert all(HEX_ID.match(a["id"]) for a in activities)
    after = ok_json(client.get(f"/sessions/{sid}"))
    assert after["state"] == "QUEUED"
    assert micros(after["updateTime"]) >= micros(activities[-1]["createTime"])
    assert micros(after["updateTime"]) > micros(session["updateTime"])


def test_send_message_keeps_unicode_and_newlines(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    text = 'Überprüfe die Tests ✓\nzweite Zeile "quoted" \\ backslash'
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": text}))
    assert list_activities(client, sid)[0]["userMessaged"]["userMessage"] == text


@pytest.mark.parametrize(
    ("setup", "before", "after"),
    [
        ("none", "QUEUED", "QUEUED"),
        ("auto-plan", "IN_PROGRESS", "IN_PROGRESS"),
        ("awaiting-plan", "AWAITING_PLAN_APPROVAL", "QUEUED"),
        ("ask", "AWAITING_USER_FEEDBACK", "QUEUED"),
        ("complete", "COMPLETED", "QUEUED"),
    ],
)
def test_send_message_by_state(
    shared: httpx.Client, server: LiveServer, setup: str, before: str, after: str
) -> None:
    sid = create_session(shared)["id"]
    settings = server.settings
    if setup in ("auto-plan", "ask", "complete"):
        driver.propose_plan(settings, sid, steps=["a"], require_approval=False)
    if setup == "awaiting-plan":
        driver.propose_plan(settings, sid, steps=["a"], require_approval=True)
    if setup == "ask":
        driver.ask_user(settings, sid, question="Which framework?")
    if setup == "complete":
        driver.complete(settings, sid, patch="", base_commit="0" * 40)
    assert state_of(shared, sid) == before

    assert ok_json(shared.post(f"/sessions/{sid}:sendMessage", json={"prompt": "go on"})) == {}
    assert state_of(shared, sid) == after
    last = list_activities(shared, sid)[-1]
    assert last["userMessaged"] == {"userMessage": "go on"}
    assert last["originator"] == "user"


# --- approvePlan ----------------------------------------------------------------------


def test_approve_plan_without_a_plan_is_a_failed_precondition(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    error = expect_error(
        client.post(f"/sessions/{sid}:approvePlan", json={}), 400, "FAILED_PRECONDITION"
    )
    assert "QUEUED" in error["message"]
    assert state_of(client, sid) == "QUEUED"
    assert list_activities(client, sid) == []


def test_approve_plan_moves_the_session_to_in_progress(
    client: httpx.Client, server: LiveServer
) -> None:
    sid = create_session(client, requirePlanApproval=True)["id"]
    plan_id = driver.propose_plan(
        server.settings, sid, steps=["Read code", "Change code", "Test"], require_approval=True
    )
    assert state_of(client, sid) == "AWAITING_PLAN_APPROVAL"
    before = list_activities(client, sid)
    assert kinds(before) == ["planGenerated"]
    assert before[0]["originator"] == "agent"
    assert before[0]["planGenerated"]["plan"]["id"] == plan_id

    response = client.post(f"/sessions/{sid}:approvePlan", json={})
    assert ok_json(response) == {}
    assert response.content == b"{}"
    assert response.headers["content-length"] == "2"

    assert state_of(client, sid) == "IN_PROGRESS"
    activities = list_activities(client, sid)
    assert kinds(activities) == ["planGenerated", "planApproved"]
    approved = activities[1]
    assert approved["planApproved"] == {"planId": plan_id}
    assert approved["originator"] == "user"

    # Nothing is waiting any more: a second approval is refused and writes nothing.
    expect_error(client.post(f"/sessions/{sid}:approvePlan"), 400, "FAILED_PRECONDITION")
    assert len(list_activities(client, sid)) == 2


def test_approve_plan_approves_the_latest_plan(client: httpx.Client, server: LiveServer) -> None:
    sid = create_session(client)["id"]
    driver.propose_plan(server.settings, sid, steps=["first try"], require_approval=True)
    # Feedback on the plan sends the session back to planning, which proposes a new plan.
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Smaller steps"}))
    newest = driver.propose_plan(server.settings, sid, steps=["a", "b"], require_approval=True)
    ok_json(client.post(f"/sessions/{sid}:approvePlan"))
    activities = list_activities(client, sid)
    assert kinds(activities) == ["planGenerated", "userMessaged", "planGenerated", "planApproved"]
    assert activities[-1]["planApproved"] == {"planId": newest}


def test_auto_approved_plan(client: httpx.Client, server: LiveServer) -> None:
    sid = create_session(client)["id"]
    plan_id = driver.propose_plan(server.settings, sid, steps=["a", "b"], require_approval=False)
    assert state_of(client, sid) == "IN_PROGRESS"
    activities = list_activities(client, sid)
    assert kinds(activities) == ["planGenerated", "planApproved"]
    assert activities[0]["planGenerated"]["plan"]["id"] == plan_id
    assert activities[1]["planApproved"] == {"planId": plan_id}
    assert activities[1]["originator"] in ("user", "system")
    # An auto-approved plan leaves nothing for approvePlan to do.
    expect_error(client.post(f"/sessions/{sid}:approvePlan"), 400, "FAILED_PRECONDITION")


def test_plan_steps_omit_index_zero(client: httpx.Client, server: LiveServer) -> None:
    sid = create_session(client)["id"]
    titles = ["Read", "Write", "Test"]
    driver.propose_plan(server.settings, sid, steps=titles, require_approval=True)
    plan = list_activities(client, sid)[0]["planGenerated"]["plan"]
    assert HEX_ID.match(plan["id"])
    steps = plan["steps"]
    assert [s["title"] for s in steps] == titles
    assert "index" not in steps[0]
    assert steps[1]["index"] == 1
    assert steps[2]["index"] == 2
    assert all(HEX_ID.match(s["id"]) for s in steps)
    assert len({s["id"] for s in steps}) == 3
    assert steps[0]["description"] == "Do Read"


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"],
)
def test_bodies_are_json_whatever_the_content_type(client: httpx.Client, content_type: str) -> None:
    """`curl -d` sends a form content type; the body is still read as JSON."""
    sid = client.post("/sessions", json={"prompt": "x"}).json()["id"]
    sent = client.post(
        f"/sessions/{sid}:sendMessage",
        content=b'{"prompt": "Use TypeScript, please."}',
        headers={"Content-Type": content_type},
    )
    assert sent.status_code == 200
    assert sent.json() == {}
    messages = [
        a["userMessaged"]["userMessage"]
        for a in client.get(f"/sessions/{sid}/activities").json()["activities"]
    ]
    assert messages == ["Use TypeScript, please."]


# --- cancel, pause, resume (extensions) -------------------------------------------------

CANCELLED = {"reason": "Cancelled by the user."}


def put_in_state(server: LiveServer, client: httpx.Client, state: str) -> str:
    """A new session of ``client``'s in ``state``, reached the way the agent and people
    reach it."""
    sid: str = create_session(client)["id"]
    settings = server.settings
    if state in ("IN_PROGRESS", "AWAITING_USER_FEEDBACK", "COMPLETED"):
        driver.propose_plan(settings, sid, steps=["a"], require_approval=False)
    if state == "AWAITING_PLAN_APPROVAL":
        driver.propose_plan(settings, sid, steps=["a"], require_approval=True)
    if state == "AWAITING_USER_FEEDBACK":
        driver.ask_user(settings, sid, question="Which framework?")
    if state == "COMPLETED":
        driver.complete(settings, sid, patch="", base_commit="0" * 40)
    if state == "PAUSED":
        ok_json(client.post(f"/sessions/{sid}:pause"))
    if state == "FAILED":
        ok_json(client.post(f"/sessions/{sid}:cancel"))
    assert state_of(client, sid) == state
    return sid


@pytest.mark.parametrize(
    "state",
    ["QUEUED", "IN_PROGRESS", "AWAITING_PLAN_APPROVAL", "AWAITING_USER_FEEDBACK", "PAUSED"],
)
def test_cancel_fails_the_session_for_the_user(
    client: httpx.Client, server: LiveServer, state: str
) -> None:
    sid = put_in_state(server, client, state)
    before = list_activities(client, sid)
    answer = ok_json(client.post(f"/sessions/{sid}:cancel"))
    # The answer is the Session as the cancel left it, like archive's.
    assert answer["state"] == "FAILED"
    assert answer == ok_json(client.get(f"/sessions/{sid}"))
    after = list_activities(client, sid)
    assert after[: len(before)] == before
    [failed] = after[len(before) :]
    assert failed["sessionFailed"] == CANCELLED
    assert failed["originator"] == "user"
    assert micros(answer["updateTime"]) >= micros(failed["createTime"])


@pytest.mark.parametrize("state", ["COMPLETED", "FAILED"])
def test_cancel_on_an_ended_session_is_a_failed_precondition(
    client: httpx.Client, server: LiveServer, state: str
) -> None:
    sid = put_in_state(server, client, state)
    before = ok_json(client.get(f"/sessions/{sid}"))
    activities = list_activities(client, sid)
    error = expect_error(client.post(f"/sessions/{sid}:cancel"), 400, "FAILED_PRECONDITION")
    assert state in error["message"]
    assert ok_json(client.get(f"/sessions/{sid}")) == before
    assert list_activities(client, sid) == activities


def test_a_message_wakes_a_cancelled_session(client: httpx.Client, server: LiveServer) -> None:
    sid = put_in_state(server, client, "IN_PROGRESS")
    ok_json(client.post(f"/sessions/{sid}:cancel"))
    assert ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Go on"})) == {}
    assert state_of(client, sid) == "QUEUED"
    assert kinds(list_activities(client, sid))[-2:] == ["sessionFailed", "userMessaged"]


@pytest.mark.parametrize("state", ["QUEUED", "IN_PROGRESS"])
def test_pause_then_resume_returns_to_where_it_was(
    client: httpx.Client, server: LiveServer, state: str
) -> None:
    sid = put_in_state(server, client, state)
    before = len(list_activities(client, sid))
    paused = ok_json(client.post(f"/sessions/{sid}:pause"))
    assert paused["state"] == "PAUSED"
    assert paused == ok_json(client.get(f"/sessions/{sid}"))
    # A message while paused is kept and leaves it paused.
    assert ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Also X"})) == {}
    assert state_of(client, sid) == "PAUSED"
    resumed = ok_json(client.post(f"/sessions/{sid}:resume"))
    assert resumed["state"] == state
    added = list_activities(client, sid)[before:]
    assert [(a["originator"], {k: a[k] for k in a if k in KINDS}) for a in added] == [
        ("user", {"progressUpdated": {"title": "Paused by the user"}}),
        ("user", {"userMessaged": {"userMessage": "Also X"}}),
        ("user", {"progressUpdated": {"title": "Resumed by the user"}}),
    ]


KINDS = {"progressUpdated", "userMessaged", "sessionFailed"}


@pytest.mark.parametrize(
    ("state", "verb"),
    [
        ("AWAITING_PLAN_APPROVAL", "pause"),
        ("AWAITING_USER_FEEDBACK", "pause"),
        ("COMPLETED", "pause"),
        ("FAILED", "pause"),
        ("PAUSED", "pause"),
        ("QUEUED", "resume"),
        ("IN_PROGRESS", "resume"),
        ("COMPLETED", "resume"),
        ("FAILED", "resume"),
    ],
)
def test_illegal_pause_and_resume_are_failed_preconditions(
    shared: httpx.Client, server: LiveServer, state: str, verb: str
) -> None:
    sid = put_in_state(server, shared, state)
    before = ok_json(shared.get(f"/sessions/{sid}"))
    activities = list_activities(shared, sid)
    error = expect_error(shared.post(f"/sessions/{sid}:{verb}"), 400, "FAILED_PRECONDITION")
    assert state in error["message"]
    assert ok_json(shared.get(f"/sessions/{sid}")) == before
    assert list_activities(shared, sid) == activities


@pytest.mark.parametrize("verb", ["cancel", "pause", "resume"])
def test_another_users_session_cannot_be_cancelled_paused_or_resumed(
    shared: httpx.Client, client: httpx.Client, server: LiveServer, verb: str
) -> None:
    sid = put_in_state(server, client, "PAUSED" if verb == "resume" else "IN_PROGRESS")
    before = ok_json(client.get(f"/sessions/{sid}"))
    activities = list_activities(client, sid)
    expect_error(shared.post(f"/sessions/{sid}:{verb}"), 404, "NOT_FOUND")
    assert ok_json(client.get(f"/sessions/{sid}")) == before
    assert list_activities(client, sid) == activities


@pytest.mark.parametrize("style", sorted(BODIES))
def test_cancel_pause_and_resume_accept_every_body_style(shared: httpx.Client, style: str) -> None:
    send = BODIES[style]
    sid = create_session(shared)["id"]
    assert ok_json(send(shared, f"/sessions/{sid}:pause"))["state"] == "PAUSED"
    assert ok_json(send(shared, f"/sessions/{sid}:resume"))["state"] == "QUEUED"
    assert ok_json(send(shared, f"/sessions/{sid}:cancel"))["state"] == "FAILED"
