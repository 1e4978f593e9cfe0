"""Page sizes and tokens of sessions.list and sessions.activities.list (250 items each)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer, provision_user
from tests import driver
from tests.api.session_support import create_session, expect_error, micros
from tests.support import api_client, ok_json, walk

COUNT = 250


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(server.api, provision_user(server.settings, name="pagination")) as c:
        yield c


@pytest.fixture(scope="module")
def session_ids(owner: httpx.Client) -> list[str]:
    """250 sessions of one user, newest first (the order sessions.list returns)."""
    created = [create_session(owner, prompt=f"task {i}")["id"] for i in range(COUNT)]
    return created[::-1]


@pytest.fixture(scope="module")
def activity_session(server: LiveServer, owner: httpx.Client) -> tuple[str, list[str]]:
    """A session with 250 activities; returns its id and the progress titles in order."""
    sid = create_session(owner, prompt="long session")["id"]
    driver.propose_plan(server.settings, sid, steps=["a"], require_approval=False)
    progress = [f"progress {i:03d}" for i in range(COUNT - 2)]
    driver.add_progress(server.settings, sid, titles=progress)
    return sid, ["planGenerated", "planApproved", *progress]


def label(activity: dict[str, Any]) -> str:
    if "progressUpdated" in activity:
        title: str = activity["progressUpdated"]["title"]
        return title
    return next(k for k in ("planGenerated", "planApproved") if k in activity)


def pages(
    client: httpx.Client, path: str, key: str, params: dict[str, str], *, token_param: str
) -> list[dict[str, Any]]:
    """Every page of a list method; asserts each response's shape on the way."""
    result: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        page = ok_json(client.get(path, params=query))
        assert set(page) <= {key, "nextPageToken"}
        result.append(page)
        token = page.get("nextPageToken")
        if token is None:
            return result
        assert isinstance(token, str)
        assert token
        query[token_param] = token
        assert len(result) <= COUNT + 1


# --- sessions -------------------------------------------------------------------------


@pytest.mark.parametrize(("page_size", "expected"), [("7", 7), (None, 30), ("100", 100)])
def test_walk_all_sessions(
    owner: httpx.Client, session_ids: list[str], page_size: str | None, expected: int
) -> None:
    params = {"pageSize": page_size} if page_size else {}
    walked = pages(owner, "/sessions", "sessions", params, token_param="pageToken")
    sizes = [len(p["sessions"]) for p in walked]
    assert sizes[:-1] == [expected] * (len(sizes) - 1)
    assert 1 <= sizes[-1] <= expected
    listed = [s["id"] for p in walked for s in p["sessions"]]
    assert listed == session_ids  # newest first, no gaps, no duplicates
    times = [micros(s["createTime"]) for p in walked for s in p["sessions"]]
    assert times == sorted(times, reverse=True)


def test_session_page_size_rules(owner: httpx.Client, session_ids: list[str]) -> None:
    def first_page(**params: str) -> dict[str, Any]:
        return ok_json(owner.get("/sessions", params=params))

    default = first_page()
    assert len(default["sessions"]) == 30
    assert [s["id"] for s in default["sessions"]] == session_ids[:30]
    assert len(first_page(pageSize="0")["sessions"]) == 30
    assert len(first_page(pageSize="500")["sessions"]) == 100
    assert len(first_page(pageSize="101")["sessions"]) == 100
    assert len(first_page(pageSize="1")["sessions"]) == 1


def test_last_session_page_has_no_token(owner: httpx.Client, session_ids: list[str]) -> None:
    page = ok_json(owner.get("/sessions", params={"pageSize": "100"}))
    page = ok_json(owner.get("/sessions", params={"pageSize": "100",
                                                  "pageToken": page["nextPageToken"]}))
    page = ok_json(owner.get("/sessions", params={"pageSize": "100",
                                                  "pageToken": page["nextPageToken"]}))
    assert len(page["sessions"]) == COUNT - 200
    assert "nextPageToken" not in page


def test_exact_fit_has_no_token_and_no_empty_page(client: httpx.Client) -> None:
    for i in range(4):
        create_session(client, prompt=f"p{i}")
    page = ok_json(client.get("/sessions", params={"pageSize": "4"}))
    assert len(page["sessions"]) == 4
    assert "nextPageToken" not in page
    page = ok_json(client.get("/sessions", params={"pageSize": "2"}))
    second = ok_json(client.get("/sessions", params={"pageSize": "2",
                                                     "pageToken": page["nextPageToken"]}))
    assert len(second["sessions"]) == 2
    assert "nextPageToken" not in second


def test_next_page_token_parameter_alias(owner: httpx.Client, session_ids: list[str]) -> None:
    # The PyPI client jules-api sends the token back as ?nextPageToken=.
    walked = pages(owner, "/sessions", "sessions", {"pageSize": "100"},
                   token_param="nextPageToken")
    assert [s["id"] for p in walked for s in p["sessions"]] == session_ids


def test_session_pages_are_stable_while_sessions_are_created(client: httpx.Client) -> None:
    older = [create_session(client, prompt=f"old {i}")["id"] for i in range(5)][::-1]
    first = ok_json(client.get("/sessions", params={"pageSize": "2"}))
    assert [s["id"] for s in first["sessions"]] == older[:2]
    newer = create_session(client, prompt="new")["id"]
    rest = walk(client, "/sessions", "sessions",
                {"pageSize": "2", "pageToken": first["nextPageToken"]})
    assert [s["id"] for s in rest] == older[2:]
    assert ok_json(client.get("/sessions"))["sessions"][0]["id"] == newer


def test_session_pages_honour_the_archived_filter(client: httpx.Client) -> None:
    made = [create_session(client, prompt=f"s{i}")["id"] for i in range(9)][::-1]
    archived = made[::3]
    for sid in archived:
        ok_json(client.post(f"/sessions/{sid}:archive"))
    visible = walk(client, "/sessions", "sessions", {"pageSize": "2"})
    assert [s["id"] for s in visible] == [s for s in made if s not in archived]
    hidden = walk(client, "/sessions", "sessions", {"pageSize": "2", "filter": "archived = true"})
    assert [s["id"] for s in hidden] == archived


# Google's front end parses an int32 in ASCII digits: no coercion of "", "1_0" or " 1".
BAD_PAGE_SIZES = ["-1", "-100", "abc", "1.5", "10abc", " ", "0x10", "", "1_0", " 1", "\u0661"]


@pytest.mark.parametrize("page_size", [*BAD_PAGE_SIZES, "2147483648"])
def test_bad_session_page_size_is_invalid(owner: httpx.Client, page_size: str) -> None:
    response = owner.get("/sessions", params={"pageSize": page_size})
    expect_error(response, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "-1",
        "!!!",
        "12345",
        base64.urlsafe_b64encode(b"s1:abc:123").decode(),
        base64.urlsafe_b64encode(b"x1:1:1234567890123456789").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"s1:" + b"9" * 30 + b":1234567890123456789").decode(),
        base64.urlsafe_b64encode(b"s1:-" + b"9" * 30 + b":1234567890123456789").decode(),
    ],
)
def test_malformed_session_page_token_is_invalid(owner: httpx.Client, token: str) -> None:
    for param in ("pageToken", "nextPageToken"):
        response = owner.get("/sessions", params={param: token})
        expect_error(response, 400, "INVALID_ARGUMENT")


# --- activities -----------------------------------------------------------------------


@pytest.mark.parametrize(("page_size", "expected"), [("7", 7), (None, 50), ("100", 100)])
def test_walk_all_activities(
    owner: httpx.Client,
    activity_session: tuple[str, list[str]],
    page_size: str | None,
    expected: int,
) -> None:
    sid, labels = activity_session
    params = {"pageSize": page_size} if page_size else {}
    walked = pages(owner, f"/sessions/{sid}/activities", "activities", params,
                   token_param="pageToken")
    sizes = [len(p["activities"]) for p in walked]
    assert sizes[:-1] == [expected] * (len(sizes) - 1)
    assert 1 <= sizes[-1] <= expected
    activities = [a for p in walked for a in p["activities"]]
    assert [label(a) for a in activities] == labels  # oldest first, no gaps, no duplicates
    assert len({a["id"] for a in activities}) == COUNT
    times = [micros(a["createTime"]) for a in activities]
    assert times == sorted(times)
    # The token is the decimal-nanosecond time of the next page's first activity, the format
    # the official SDK parses (pageTokenToDate).
    for page, following in pairwise(walked):
        token = page["nextPageToken"]
        assert token.isdigit()
        assert int(token) == micros(following["activities"][0]["createTime"]) * 1000


def test_activity_page_size_rules(
    owner: httpx.Client, activity_session: tuple[str, list[str]]
) -> None:
    sid, labels = activity_session

    def first_page(**params: str) -> dict[str, Any]:
        return ok_json(owner.get(f"/sessions/{sid}/activities", params=params))

    default = first_page()
    assert len(default["activities"]) == 50
    assert [label(a) for a in default["activities"]] == labels[:50]
    assert len(first_page(pageSize="0")["activities"]) == 50
    assert len(first_page(pageSize="500")["activities"]) == 100
    assert len(first_page(pageSize="1")["activities"]) == 1
    last = first_page(pageSize="100", pageToken=first_page(pageSize="200")["nextPageToken"])
    assert "nextPageToken" in last
    final = first_page(pageSize="100", pageToken=last["nextPageToken"])
    assert len(final["activities"]) == COUNT - 200
    assert "nextPageToken" not in final


def test_activity_pages_with_a_filter(
    owner: httpx.Client, activity_session: tuple[str, list[str]]
) -> None:
    sid, labels = activity_session
    cut = ok_json(owner.get(f"/sessions/{sid}/activities", params={"pageSize": "100"}))
    after = cut["activities"][-1]["createTime"]
    rest = walk(owner, f"/sessions/{sid}/activities", "activities",
                {"pageSize": "7", "filter": f'create_time>"{after}"'})
    assert [label(a) for a in rest] == labels[100:]


def test_activity_next_page_token_parameter_alias(
    owner: httpx.Client, activity_session: tuple[str, list[str]]
) -> None:
    sid, labels = activity_session
    walked = pages(owner, f"/sessions/{sid}/activities", "activities", {"pageSize": "100"},
                   token_param="nextPageToken")
    assert [label(a) for p in walked for a in p["activities"]] == labels


@pytest.mark.parametrize("page_size", ["-1", "abc", "2.0"])
def test_bad_activity_page_size_is_invalid(
    owner: httpx.Client, activity_session: tuple[str, list[str]], page_size: str
) -> None:
    sid, _ = activity_session
    response = owner.get(f"/sessions/{sid}/activities", params={"pageSize": page_size})
    expect_error(response, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("token", ["garbage", "-5", "1.5", "1" * 21, "0x10", "\u00b2"])
def test_malformed_activity_page_token_is_invalid(
    owner: httpx.Client, activity_session: tuple[str, list[str]], token: str
) -> None:
    sid, _ = activity_session
    response = owner.get(f"/sessions/{sid}/activities", params={"pageToken": token})
    expect_error(response, 400, "INVALID_ARGUMENT")
