"""Text the database cannot store is refused, naming the field (issue 9, finding 3).

The probe: a lone surrogate (JSON ``"\\ud800"``) in the prompt, title, source,
automationMode or a message was a 500 (UnicodeEncodeError) on both databases; NUL in
the prompt, title, source or a path (``GET /v1alpha/sources/github/acme/de%00mo``) a
500 (psycopg.DataError) on PostgreSQL. Now each is 400 INVALID_ARGUMENT with a field
violation, the same on SQLite and PostgreSQL, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.session_support import create_session, expect_error
from tests.support import MISSING_SESSION_ID, ok_json

# JSON escapes, spelled as a client sends them (httpx cannot encode a lone surrogate).
SURROGATE = "\\ud800"
NUL = "\\u0000"
BAD = [SURROGATE, NUL, "x \\udfff y", "\\ud83d"]  # the last: half of an emoji


def _post_raw(client: httpx.Client, path: str, body: str) -> httpx.Response:
    return client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})


def _violated_field(response: httpx.Response) -> str:
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    violations: list[dict[str, Any]] = error["details"][0]["fieldViolations"]
    assert len(violations) == 1, violations
    field: str = violations[0]["field"]
    assert field in error["message"]
    return field


CREATE_BODIES = {
    "session.prompt": '{{"prompt": "fix it {bad}"}}',
    "session.title": '{{"prompt": "p", "title": "{bad}"}}',
    "session.source_context.source": (
        '{{"prompt": "p", "sourceContext": {{"source": "sources/github/acme/de{bad}mo"}}}}'
    ),
    "session.source_context.github_repo_context.starting_branch": (
        '{{"prompt": "p", "sourceContext": {{"source": "sources/github/acme/demo", '
        '"githubRepoContext": {{"startingBranch": "ma{bad}in"}}}}}}'
    ),
    "session.automation_mode": '{{"prompt": "p", "automationMode": "AUTO{bad}"}}',
    "session.source_context.working_branch": (
        '{{"prompt": "p", "sourceContext": {{"source": "s", "workingBranch": "{bad}"}}}}'
    ),
}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("field", sorted(CREATE_BODIES))
def test_create_refuses_unstorable_text_naming_the_field(
    client: httpx.Client, field: str, bad: str
) -> None:
    response = _post_raw(client, "/sessions", CREATE_BODIES[field].format(bad=bad))
    assert _violated_field(response) == field
    assert ok_json(client.get("/sessions")) == {}


def test_an_unstorable_field_name_is_refused(client: httpx.Client) -> None:
    response = _post_raw(client, "/sessions", f'{{"prompt": "p", "x{SURROGATE}": 1}}')
    assert _violated_field(response) == "session"


@pytest.mark.parametrize("bad", BAD)
def test_send_message_refuses_unstorable_text(client: httpx.Client, bad: str) -> None:
    session = create_session(client)
    response = _post_raw(
        client, f"/sessions/{session['id']}:sendMessage", f'{{"prompt": "go {bad}"}}'
    )
    assert _violated_field(response) == "prompt"
    assert ok_json(client.get(f"/sessions/{session['id']}")) == session


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sources/github/acme/de%00mo"),
        ("GET", "/sessions/12%0034"),
        ("DELETE", "/sessions/12%0034"),
        ("POST", "/sessions/12%0034:archive"),
        ("GET", "/sessions/12%0034/activities"),
        ("GET", f"/sessions/{MISSING_SESSION_ID}/activities/a%00b"),
    ],
)
def test_nul_in_a_path_is_refused(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert _violated_field(response) == "name"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/sources", {"filter": 'name="sources/github/acme/de\x00mo"'}, "filter"),
        ("/sessions", {"filter": "state=QUEUED\x00"}, "filter"),
        ("/sources", {"pageToken": "github/acme/de\x00mo"}, "page_token"),
        ("/sessions", {"pageToken": "czE6\x00"}, "page_token"),
        ("/sessions", {"nextPageToken": "\x00"}, "page_token"),
    ],
)
def test_nul_in_a_query_parameter_is_refused(
    client: httpx.Client, path: str, params: dict[str, str], field: str
) -> None:
    assert _violated_field(client.get(path, params=params)) == field


def test_an_unknown_enum_value_still_gets_the_enum_error(client: httpx.Client) -> None:
    response = client.post("/sessions", json={"prompt": "p", "automationMode": "SOMETIMES"})
    error = expect_error(response, 400, "INVALID_ARGUMENT")
    assert "AutomationMode" in error["message"]


def test_any_valid_unicode_is_stored_and_echoed_exactly(client: httpx.Client) -> None:
    prompt = "Fix the naïve café bug 🐛 — 修复 \u200b\t\n\U0010ffff"
    title = "Ünïcödé 🚀"
    session = create_session(client, prompt=prompt, title=title)
    assert (session["prompt"], session["title"]) == (prompt, title)
    again = ok_json(client.get(f"/sessions/{session['id']}"))
    assert (again["prompt"], again["title"]) == (prompt, title)
    ok_json(client.post(f"/sessions/{session['id']}:sendMessage", json={"prompt": prompt}))
