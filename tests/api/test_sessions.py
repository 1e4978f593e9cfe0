"""sessions.create / get / delete / list and :archive / :unarchive over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer, provision_user
from tests import driver
from tests.api.session_support import (
    SESSION_ID,
    add_source,
    create_session,
    expect_error,
    field_violations,
    micros,
)
from tests.support import SOURCE_NAME, api_client, ok_json


@pytest.fixture(scope="module")
def source(server: LiveServer, git_repo: Path) -> str:
    return add_source(server, git_repo)


@pytest.fixture(scope="module")
def shared(server: LiveServer) -> Iterator[httpx.Client]:
    """One user for the whole module, for tests that only look at errors."""
    with api_client(server.api, provision_user(server.settings, name="sessions-shared")) as c:
        yield c


def ids(listing: dict[str, Any]) -> list[str]:
    return [s["id"] for s in listing.get("sessions", [])]


# --- create ---------------------------------------------------------------------------


def test_create_returns_the_full_queued_session(
    client: httpx.Client, server: LiveServer, source: str
) -> None:
    before_us = time.time_ns() // 1000
    session = ok_json(
        client.post(
            "/sessions",
            json={
                "prompt": "Add a CHANGELOG",
                "sourceContext": {
                    "source": source,
                    "githubRepoContext": {"startingBranch": "develop"},
                },
            },
        )
    )
    after_us = time.time_ns() // 1000
    assert set(session) == {
        "name", "id", "prompt", "sourceContext", "title", "createTime", "updateTime", "state",
        "url",
    }
    assert SESSION_ID.match(session["id"])
    assert session["name"] == f"sessions/{session['id']}"
    assert session["state"] == "QUEUED"
    assert session["prompt"] == "Add a CHANGELOG"
    assert session["title"] == "Add a CHANGELOG"
    assert session["url"] == f"{server.url}/session/{session['id']}"
    assert session["sourceContext"] == {
        "source": SOURCE_NAME,
        "githubRepoContext": {"startingBranch": "develop"},
    }
    created = micros(session["createTime"])
    assert before_us - 1_000_000 <= created <= after_us + 1_000_000
    assert micros(session["updateTime"]) >= created


def test_create_accepts_snake_case_and_nulls(client: httpx.Client, source: str) -> None:
    # What the PyPI client `jules-api` sends: pydantic .dict() with unset fields as null.
    session = ok_json(
        client.post(
            "/sessions",
            json={
                "prompt": "Fix the build",
                "title": None,
                "source_context": {
                    "source": source,
                    "github_repo_context": {"starting_branch": "feature/x"},
                },
                "require_plan_approval": True,
                "automation_mode": None,
            },
        )
    )
    assert session["state"] == "QUEUED"
    assert session["title"] == "Fix the build"
    assert session["sourceContext"]["githubRepoContext"] == {"startingBranch": "feature/x"}


def test_create_accepts_null_source_context_as_repoless(client: httpx.Client) -> None:
    session = ok_json(
        client.post("/sessions", json={"prompt": "Write a haiku", "sourceContext": None})
    )
    assert "sourceContext" not in session


def test_repoless_session_has_no_source_context(client: httpx.Client) -> None:
    session = create_session(client, prompt="Compute the 100th prime and write answer.md")
    assert "sourceContext" not in session
    assert session["state"] == "QUEUED"
    fetched = ok_json(client.get(f"/sessions/{session['id']}"))
    assert "sourceContext" not in fetched


def test_starting_branch_defaults_to_the_sources_default_branch(
    client: httpx.Client, source: str
) -> None:
    expected = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    session = create_session(client, sourceContext={"source": source})
    assert session["sourceContext"] == expected
    nulled = create_session(
        client, source_context={"source": source, "github_repo_context": None}
    )
    assert nulled["sourceContext"] == expected


def test_input_only_fields_are_never_echoed(client: httpx.Client, source: str) -> None:
    session = create_session(
        client,
        sourceContext={"source": source, "githubRepoContext": {"startingBranch": "main"}},
        requirePlanApproval=True,
        automationMode="AUTO_CREATE_PR",
    )
    fetched = ok_json(client.get(f"/sessions/{session['id']}"))
    listed = ok_json(client.get("/sessions"))["sessions"][0]
    for body in (session, fetched, listed):
        assert "requirePlanApproval" not in body
        assert "automationMode" not in body
        assert "require_plan_approval" not in body
        assert "automation_mode" not in body


def test_automation_mode_unspecified_is_accepted(client: httpx.Client) -> None:
    # The TS SDK sends AUTOMATION_MODE_UNSPECIFIED when autoPr is false.
    session = create_session(client, automationMode="AUTOMATION_MODE_UNSPECIFIED")
    assert session["state"] == "QUEUED"


def test_title_is_derived_from_the_prompt_when_absent(client: httpx.Client) -> None:
    session = create_session(client, prompt="\n  Refactor the parser\nThen add tests.\n")
    assert session["title"] == "Refactor the parser"
    long_prompt = "word " * 100
    derived = create_session(client, prompt=long_prompt)["title"]
    assert derived
    assert len(derived) <= 80
    assert long_prompt.startswith(derived.rstrip("…"))


def test_blank_title_is_replaced_by_a_derived_one(client: httpx.Client) -> None:
    assert create_session(client, prompt="Bump deps", title="   ")["title"] == "Bump deps"


def test_explicit_title_is_kept(client: httpx.Client) -> None:
    session = create_session(client, prompt="Do many things", title="My own title")
    assert session["title"] == "My own title"
    assert ok_json(client.get(f"/sessions/{session['id']}"))["title"] == "My own title"


def test_session_ids_are_distinct(client: httpx.Client) -> None:
    created = {create_session(client)["id"] for _ in range(5)}
    assert len(created) == 5


# --- create: validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": "   \n\t"},
        {"prompt": None},
        {"title": "no prompt"},
    ],
    ids=["empty-object", "empty-prompt", "blank-prompt", "null-prompt", "missing-prompt"],
)
def test_create_requires_a_prompt(shared: httpx.Client, body: dict[str, Any]) -> None:
    error = expect_error(shared.post("/sessions", json=body), 400, "INVALID_ARGUMENT")
    assert field_violations(error) == ["session.prompt"]


def test_create_without_body_requires_a_prompt(client: httpx.Client) -> None:
    expect_error(client.post("/sessions"), 400, "INVALID_ARGUMENT")


def test_create_with_unknown_source_is_invalid(client: httpx.Client) -> None:
    response = client.post(
        "/sessions",
        json={"prompt": "x", "sourceContext": {"source": "sources/github/nobody/nothing"}},
    )
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert "sources/github/nobody/nothing" in error["message"]
    assert field_violations(error) == ["session.source_context.source"]


def test_create_with_unknown_starting_branch_is_invalid(
    client: httpx.Client, source: str
) -> None:
    response = client.post(
        "/sessions",
        json={
            "prompt": "x",
            "sourceContext": {"source": source, "githubRepoContext": {"startingBranch": "nope"}},
        },
    )
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert "nope" in error["message"]
    assert field_violations(error) == [
        "session.source_context.github_repo_context.starting_branch"
    ]


def test_create_with_invalid_enum_matches_googles_error(client: httpx.Client) -> None:
    response = client.post("/sessions", json={"prompt": "x", "automationMode": "MANUAL"})
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert field_violations(error) == ["session.automation_mode"]
    assert "MANUAL" in error["message"]
    # The exact observed message, which clients show to people.
    assert error["message"] == (
        "Invalid value at 'session.automation_mode' "
        "(type.googleapis.com/google.labs.jules.v1alpha.AutomationMode), \"MANUAL\""
    )


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x", "colour": "blue"},
        {"prompt": "x", "sourceContext": {"source": "sources/github/a/b", "branch": "main"}},
        {"session": {"prompt": "x"}},
        {"prompt": "x", "requirePlanApproval": "maybe"},
        {"prompt": ["x"]},
        {"prompt": "x", "sourceContext": "sources/github/a/b"},
    ],
    ids=["unknown-field", "unknown-nested-field", "wrapped", "bad-bool", "list-prompt",
         "string-source-context"],
)
def test_create_rejects_malformed_fields(shared: httpx.Client, body: dict[str, Any]) -> None:
    error = expect_error(shared.post("/sessions", json=body), 400, "INVALID_ARGUMENT")
    assert field_violations(error)


def test_create_unknown_field_names_it(client: httpx.Client) -> None:
    error = expect_error(
        client.post("/sessions", json={"session": {"prompt": "x"}}), 400, "INVALID_ARGUMENT"
    )
    assert '"session"' in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"prompt": "x",}', b"not json", b"[]", b'[{"prompt": "x"}]', b'"x"', b"42",
     b"\xff\xfe"],
    ids=["truncated", "trailing-comma", "text", "empty-array", "array", "string", "number",
         "binary"],
)
def test_create_rejects_bodies_that_are_not_a_json_object(
    shared: httpx.Client, raw: bytes
) -> None:
    response = shared.post(
        "/sessions", content=raw, headers={"Content-Type": "application/json"}
    )
    expect_error(response, 400, "INVALID_ARGUMENT")


def test_create_validation_never_answers_422_or_500(client: httpx.Client) -> None:
    bodies: list[Any] = [
        None, {"prompt": 1}, {"prompt": {"a": 1}}, {"sourceContext": {}},
        {"prompt": "x", "sourceContext": {}}, {"prompt": "x", "sourceContext": {"source": ""}},
        {"prompt": "x", "sourceContext": {"source": SOURCE_NAME, "githubRepoContext": {}}},
        {"prompt": "x", "automationMode": 7}, {"prompt": "x", "title": 3},
    ]
    for body in bodies:
        response = client.post("/sessions", json=body)
        assert response.status_code in (200, 400), (body, response.status_code, response.text)
        if response.status_code == 400:
            expect_error(response, 400)


# --- get / delete ---------------------------------------------------------------------


def test_get_returns_what_create_returned(client: httpx.Client, source: str) -> None:
    session = create_session(client, sourceContext={"source": source}, title="t")
    assert ok_json(client.get(f"/sessions/{session['id']}")) == session


@pytest.mark.parametrize("session_id", ["1234567890123456789", "abc", "12345678901234567890123"])
def test_get_unknown_session_is_not_found(shared: httpx.Client, session_id: str) -> None:
    error = expect_error(shared.get(f"/sessions/{session_id}"), 404, "NOT_FOUND")
    assert error["message"] == "Requested entity was not found."


def test_delete_returns_empty_object_and_removes_everything(client: httpx.Client) -> None:
    session = create_session(client)
    sid = session["id"]
    assert ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "hi"})) == {}
    activity = ok_json(client.get(f"/sessions/{sid}/activities"))["activities"][0]

    response = client.delete(f"/sessions/{sid}")
    assert ok_json(response) == {}
    assert response.content == b"{}"

    expect_error(client.get(f"/sessions/{sid}"), 404, "NOT_FOUND")
    expect_error(client.get(f"/sessions/{sid}/activities"), 404, "NOT_FOUND")
    expect_error(client.get(f"/{activity['name']}"), 404, "NOT_FOUND")
    assert sid not in ids(ok_json(client.get("/sessions")))
    # Deleting again: it is gone (the TS SDK treats 404 on delete as "already deleted").
    expect_error(client.delete(f"/sessions/{sid}"), 404, "NOT_FOUND")


def test_delete_unknown_session_is_not_found(client: httpx.Client) -> None:
    expect_error(client.delete("/sessions/1234567890123456789"), 404, "NOT_FOUND")


# --- archive / unarchive / list filters -----------------------------------------------


def test_archive_and_unarchive_return_the_session(client: httpx.Client) -> None:
    session = create_session(client)
    sid = session["id"]
    archived = ok_json(client.post(f"/sessions/{sid}:archive", json={}))
    assert archived["archived"] is True
    assert archived["id"] == sid
    assert archived["name"] == f"sessions/{sid}"
    assert archived["state"] == "QUEUED"
    assert ok_json(client.get(f"/sessions/{sid}"))["archived"] is True

    unarchived = ok_json(client.post(f"/sessions/{sid}:unarchive", json={}))
    assert "archived" not in unarchived
    assert unarchived["id"] == sid
    assert "archived" not in ok_json(client.get(f"/sessions/{sid}"))


def test_archiving_twice_is_harmless(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    ok_json(client.post(f"/sessions/{sid}:archive"))
    assert ok_json(client.post(f"/sessions/{sid}:archive"))["archived"] is True
    ok_json(client.post(f"/sessions/{sid}:unarchive"))
    assert "archived" not in ok_json(client.post(f"/sessions/{sid}:unarchive"))


def test_list_filters_archived_sessions(client: httpx.Client) -> None:
    kept = create_session(client, prompt="kept")["id"]
    hidden = create_session(client, prompt="hidden")["id"]
    ok_json(client.post(f"/sessions/{hidden}:archive"))

    def listed(flt: str | None) -> list[str]:
        params = {"filter": flt} if flt is not None else {}
        return ids(ok_json(client.get("/sessions", params=params)))

    assert listed(None) == [kept]
    assert listed("") == [kept]
    assert listed("archived = false") == [kept]
    assert listed("archived = true") == [hidden]
    assert listed("archived=true") == [hidden]
    assert listed("archived = true OR archived = false") == [hidden, kept]
    assert listed("archived = false OR archived = true") == [hidden, kept]
    # What an archived session looks like in a list.
    only = ok_json(client.get("/sessions", params={"filter": "archived = true"}))["sessions"][0]
    assert only["archived"] is True


def test_list_is_newest_first(client: httpx.Client) -> None:
    created = [create_session(client, prompt=f"p{i}")["id"] for i in range(4)]
    assert ids(ok_json(client.get("/sessions"))) == created[::-1]


def test_list_of_a_user_without_sessions_is_an_empty_object(client: httpx.Client) -> None:
    response = client.get("/sessions")
    assert ok_json(response) == {}


def test_list_filters_by_state(client: httpx.Client, server: LiveServer) -> None:
    queued = create_session(client, prompt="queued")["id"]
    working = create_session(client, prompt="working")["id"]
    driver.propose_plan(server.settings, working, steps=["a"], require_approval=False)

    def listed(flt: str) -> list[str]:
        return ids(ok_json(client.get("/sessions", params={"filter": flt})))

    assert listed("state = QUEUED") == [queued]
    assert listed('state = "IN_PROGRESS"') == [working]
    assert listed("state = COMPLETED") == []
    assert listed("state = QUEUED OR state = IN_PROGRESS") == [working, queued]
    assert listed("state = QUEUED AND archived = false") == [queued]


@pytest.mark.parametrize(
    "flt",
    [
        "archived = maybe",
        "archived",
        "archived =",
        "= true",
        "colour = blue",
        "state = SLEEPING",
        "state > QUEUED",
        "(archived = true",
        "archived = true)",
        "archived = true OR",
        'archived = "true',
        "archived ~ true",
    ],
)
def test_bad_session_filters_are_invalid(shared: httpx.Client, flt: str) -> None:
    expect_error(shared.get("/sessions", params={"filter": flt}), 400, "INVALID_ARGUMENT")
