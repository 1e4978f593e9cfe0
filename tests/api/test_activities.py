"""sessions.activities.list / get: order, times, ids, kinds and the create_time filters."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer, provision_user
from tests import driver
from tests.api.session_support import HEX_ID, create_session, expect_error, micros
from tests.support import ACTIVITY_KINDS, api_client, list_activities, ok_json

# Keys an activity may carry besides its one kind.
COMMON_KEYS = {"name", "id", "description", "createTime", "originator", "artifacts"}


@pytest.fixture(scope="module")
def shared(server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(server.api, provision_user(server.settings, name="activities-shared")) as c:
        yield c


@pytest.fixture(scope="module")
def five(server: LiveServer, shared: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    """A session with exactly five progressUpdated activities, written in one transaction."""
    sid = create_session(shared)["id"]
    driver.propose_plan(server.settings, sid, steps=["x"], require_approval=False)
    driver.add_progress(server.settings, sid, titles=[f"step {i}" for i in range(5)])
    activities = [a for a in list_activities(shared, sid) if "progressUpdated" in a]
    assert len(activities) == 5
    # Keep only the five for the filter tests: a filter on the plan's time excludes it.
    return sid, activities


def kind_of(activity: dict[str, Any]) -> str:
    present = [k for k in activity if k in ACTIVITY_KINDS]
    assert len(present) == 1, activity
    return present[0]


def titles(page: dict[str, Any]) -> list[str]:
    return [a["progressUpdated"]["title"] for a in page.get("activities", [])
            if "progressUpdated" in a]


# --- list / get -----------------------------------------------------------------------


def test_new_session_has_an_empty_activity_list_not_a_404(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    response = client.get(f"/sessions/{sid}/activities")
    assert ok_json(response) == {}
    assert response.content == b"{}"


def test_activities_of_an_unknown_session_are_not_found(shared: httpx.Client) -> None:
    expect_error(shared.get("/sessions/1234567890123456789/activities"), 404, "NOT_FOUND")
    expect_error(shared.get("/sessions/nope/activities"), 404, "NOT_FOUND")


def test_get_activity_by_name(client: httpx.Client, server: LiveServer) -> None:
    sid = create_session(client)["id"]
    driver.propose_plan(server.settings, sid, steps=["a", "b"], require_approval=False)
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "hello"}))
    listed = list_activities(client, sid)
    assert len(listed) == 3
    for activity in listed:
        assert activity["name"] == f"sessions/{sid}/activities/{activity['id']}"
        # The name is the path, as the TS SDK builds it.
        assert ok_json(client.get(f"/{activity['name']}")) == activity
        assert ok_json(client.get(f"/sessions/{sid}/activities/{activity['id']}")) == activity


def test_get_unknown_activity_is_not_found(client: httpx.Client) -> None:
    sid = create_session(client)["id"]
    other = create_session(client)["id"]
    ok_json(client.post(f"/sessions/{other}:sendMessage", json={"prompt": "hello"}))
    foreign = list_activities(client, other)[0]["id"]
    expect_error(client.get(f"/sessions/{sid}/activities/{'0' * 32}"), 404, "NOT_FOUND")
    expect_error(client.get(f"/sessions/{sid}/activities/nope"), 404, "NOT_FOUND")
    # An activity exists only under its own session.
    expect_error(client.get(f"/sessions/{sid}/activities/{foreign}"), 404, "NOT_FOUND")
    expect_error(client.get(f"/sessions/1234567890123456789/activities/{foreign}"), 404,
                 "NOT_FOUND")


def test_activities_are_oldest_first_with_unique_hex_ids(
    client: httpx.Client, server: LiveServer
) -> None:
    sid = create_session(client)["id"]
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "first"}))
    driver.propose_plan(server.settings, sid, steps=["a"], require_approval=False)
    driver.add_progress(server.settings, sid, titles=["p1", "p2"])
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "last"}))
    activities = list_activities(client, sid)
    assert [kind_of(a) for a in activities] == [
        "userMessaged", "planGenerated", "planApproved", "progressUpdated", "progressUpdated",
        "userMessaged",
    ]
    assert [a["progressUpdated"]["title"] for a in activities[3:5]] == ["p1", "p2"]
    assert all(HEX_ID.match(a["id"]) for a in activities)
    assert len({a["id"] for a in activities}) == len(activities)


def test_create_times_are_at_least_a_millisecond_apart(
    client: httpx.Client, server: LiveServer
) -> None:
    sid = create_session(client)["id"]
    # Both of these write several activities in a single transaction.
    driver.propose_plan(server.settings, sid, steps=["a"], require_approval=False)
    driver.add_progress(server.settings, sid, titles=[f"t{i}" for i in range(40)])
    # And these are separate requests in quick succession.
    for i in range(5):
        ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": f"m{i}"}))
    times = [micros(a["createTime"]) for a in list_activities(client, sid)]
    assert len(times) == 47
    gaps = [b - a for a, b in pairwise(times)]
    assert min(gaps) >= 1000, gaps
    # Fixed-width timestamps: string order is time order (the TS SDK compares strings).
    stamps = [a["createTime"] for a in list_activities(client, sid)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


def test_concurrent_messages_keep_times_unique_and_ordered(client: httpx.Client) -> None:
    sid = create_session(client)["id"]

    def send(i: int) -> int:
        return client.post(f"/sessions/{sid}:sendMessage", json={"prompt": f"m{i}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(24)))
    assert statuses == [200] * 24
    activities = list_activities(client, sid)
    assert sorted(a["userMessaged"]["userMessage"] for a in activities) == sorted(
        f"m{i}" for i in range(24)
    )
    times = [micros(a["createTime"]) for a in activities]
    assert min(b - a for a, b in pairwise(times)) >= 1000


def test_every_activity_has_exactly_one_kind_and_no_type(
    client: httpx.Client, server: LiveServer
) -> None:
    sid = create_session(client)["id"]
    settings = server.settings
    driver.propose_plan(settings, sid, steps=["a", "b"], require_approval=True)
    ok_json(client.post(f"/sessions/{sid}:approvePlan"))
    driver.add_progress(settings, sid, titles=["Ran tests"])
    driver.ask_user(settings, sid, question="Keep the old API?")
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "Yes"}))
    # The woken session is queued again; the agent picks it up and finishes.
    driver.propose_plan(settings, sid, steps=["c"], require_approval=False)
    driver.complete(settings, sid, patch="diff --git a/x b/x\n", base_commit="a" * 40,
                    source="sources/github/acme/demo")
    activities = list_activities(client, sid)
    seen = [kind_of(a) for a in activities]
    assert seen == [
        "planGenerated", "planApproved", "progressUpdated", "agentMessaged", "userMessaged",
        "planGenerated", "planApproved", "sessionCompleted",
    ]
    for activity in activities:
        assert "type" not in activity
        assert set(activity) - ACTIVITY_KINDS <= COMMON_KEYS, activity
        assert activity["originator"] in ("user", "agent", "system")
    assert activities[3]["agentMessaged"] == {"agentMessage": "Keep the old API?"}
    assert activities[3]["originator"] == "agent"
    completed = activities[-1]
    assert completed["sessionCompleted"] == {}
    assert completed["originator"] == "agent"
    assert completed["artifacts"] == [
        {
            "changeSet": {
                "source": "sources/github/acme/demo",
                "gitPatch": {
                    "unidiffPatch": "diff --git a/x b/x\n",
                    "baseCommitId": "a" * 40,
                    "suggestedCommitMessage": "Apply the change",
                },
            }
        }
    ]
    session = ok_json(client.get(f"/sessions/{sid}"))
    assert session["state"] == "COMPLETED"
    assert session["outputs"] == [{"changeSet": completed["artifacts"][0]["changeSet"]}]


# --- filters --------------------------------------------------------------------------


def shift(timestamp: str, *, micro: int = 0) -> str:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    moment += timedelta(microseconds=micro)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def filtered(client: httpx.Client, sid: str, **params: str) -> list[str]:
    return titles(ok_json(client.get(f"/sessions/{sid}/activities", params=params)))


STEPS = [f"step {i}" for i in range(5)]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('create_time>"{t}"', STEPS[3:]),
        ('create_time >= "{t}"', STEPS[2:]),
        ('create_time<"{t}"', STEPS[:2]),
        ('create_time<="{t}"', STEPS[:3]),
        ('create_time="{t}"', STEPS[2:3]),
        ("create_time>{t}", STEPS[3:]),
        ("create_time >= {t}", STEPS[2:]),
        ("create_time<{t}", STEPS[:2]),
        ("create_time<={t}", STEPS[:3]),
        ("create_time={t}", STEPS[2:3]),
        ('createTime>"{t}"', STEPS[3:]),
        ("createTime<={t}", STEPS[:3]),
        ("create_time>'{t}'", STEPS[3:]),
        ('create_time>"{t}" AND create_time<"{last}"', STEPS[3:4]),
        ('create_time>"{t}" create_time<"{last}"', STEPS[3:4]),
        ('create_time<"{first}" OR create_time>="{last}"', [STEPS[4]]),
        ('(create_time = "{t}" OR create_time = "{last}")', [STEPS[2], STEPS[4]]),
    ],
)
def test_create_time_filter(
    shared: httpx.Client, five: tuple[str, list[dict[str, Any]]], template: str,
    expected: list[str],
) -> None:
    sid, activities = five
    stamps = [a["createTime"] for a in activities]
    flt = template.format(t=stamps[2], first=stamps[0], last=stamps[4])
    # The planGenerated/planApproved pair is older than step 0; keep it out of '<' results.
    flt = f"({flt}) AND create_time >= \"{stamps[0]}\""
    assert filtered(shared, sid, filter=flt) == expected


def test_create_time_filter_accepts_other_precisions_and_offsets(
    shared: httpx.Client, five: tuple[str, list[dict[str, Any]]]
) -> None:
    sid, activities = five
    t2 = activities[2]["createTime"]
    nanos = t2[:-1] + "000Z"  # nine fractional digits
    assert filtered(shared, sid, filter=f'create_time>"{nanos}"') == STEPS[3:]
    assert filtered(shared, sid, filter=f'create_time="{nanos}"') == STEPS[2:3]
    # One nanosecond later excludes t2 from '>=' and '='.
    later = t2[:-1] + "001Z"
    assert filtered(shared, sid, filter=f'create_time>="{later}"') == STEPS[3:]
    assert filtered(shared, sid, filter=f'create_time="{later}"') == []
    # The same instant written with a +02:00 offset.
    moment = datetime.strptime(t2, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    offset = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert offset.endswith("+02:00")
    assert filtered(shared, sid, filter=f'create_time>"{offset}"') == STEPS[3:]
    # Whole seconds, no fraction: everything in the far past and nothing in the far future.
    everything = ok_json(shared.get(f"/sessions/{sid}/activities",
                                    params={"filter": 'create_time>"2000-01-01T00:00:00Z"'}))
    assert len(everything["activities"]) == 7
    future = shared.get(f"/sessions/{sid}/activities",
                        params={"filter": 'create_time>"2999-01-01T00:00:00Z"'})
    assert ok_json(future) == {}


def test_the_sdk_filter_after_its_newest_activity_returns_only_new_ones(
    client: httpx.Client, server: LiveServer
) -> None:
    # What @google/jules-sdk sends on history()/hydrate(): strictly after the newest cached one.
    sid = create_session(client)["id"]
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "one"}))
    newest = list_activities(client, sid)[-1]["createTime"]
    params = {"filter": f'create_time>"{newest}"'}
    assert ok_json(client.get(f"/sessions/{sid}/activities", params=params)) == {}
    ok_json(client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "two"}))
    page = ok_json(client.get(f"/sessions/{sid}/activities", params=params))
    assert [a["userMessaged"]["userMessage"] for a in page["activities"]] == ["two"]


def test_create_time_parameter_is_inclusive(
    shared: httpx.Client, five: tuple[str, list[dict[str, Any]]]
) -> None:
    sid, activities = five
    t2 = activities[2]["createTime"]
    assert filtered(shared, sid, createTime=t2) == STEPS[2:]
    assert filtered(shared, sid, createTime=shift(t2, micro=1)) == STEPS[3:]
    assert filtered(shared, sid, createTime=t2[:-1] + "000Z") == STEPS[2:]
    # Combined with a filter: both apply.
    last = activities[4]["createTime"]
    assert filtered(shared, sid, createTime=t2, filter=f'create_time<"{last}"') == STEPS[2:4]
    assert filtered(shared, sid, createTime="") == filtered(shared, sid)


@pytest.mark.parametrize(
    "flt",
    [
        'create_time>"yesterday"',
        'create_time>"2026-13-01T00:00:00Z"',
        'create_time>"2026-01-01T00:00:00"',
        'create_time>"2026-01-01"',
        'create_time>"2026-01-01T25:00:00Z"',
        'create_time>"2026-01-01T00:00:00.1234567890Z"',
        'create_time>""',
        "create_time>",
        "create_time",
        'update_time>"2026-01-01T00:00:00Z"',
        "state = QUEUED",
        'create_time>"2026-01-01T00:00:00Z" OR',
        'create_time>"9999-12-31T23:59:59.999-23:59"',
        "create_time<0001-01-01T00:00:00+00:01",
        '(create_time>"2026-01-01T00:00:00Z"',
    ],
)
def test_malformed_activity_filters_are_invalid(
    shared: httpx.Client, five: tuple[str, list[dict[str, Any]]], flt: str
) -> None:
    sid, _ = five
    response = shared.get(f"/sessions/{sid}/activities", params={"filter": flt})
    expect_error(response, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-01-01",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00Z",
        "1700000000",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_malformed_create_time_parameter_is_invalid(
    shared: httpx.Client, five: tuple[str, list[dict[str, Any]]], value: str
) -> None:
    sid, _ = five
    response = shared.get(f"/sessions/{sid}/activities", params={"createTime": value})
    expect_error(response, 400, "INVALID_ARGUMENT")
