"""Live streams (``alt=sse``) through real HTTP on both backends: what a client of
sessions.get, sessions.list and sessions.activities.list sees when it asks to stream.

Here the server has no workers: sessions change through the API's own verbs (runs of
the agent are watched in test_streams_agent.py and test_streams_worker.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer, provision_user
from tests.sse_support import SSE, EventReader, assert_as_get, stream
from tests.support import (
    MISSING_SESSION_ID,
    api_client,
    list_activities,
)

KEEPALIVE_S = 0.3


@pytest.fixture(scope="module")
def api(
    server_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = server_settings.model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("streams-api"),
            "sse_keepalive_seconds": KEEPALIVE_S,
        }
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture
def key(api: LiveServer) -> str:
    return provision_user(api.settings, name=f"s-{secrets.token_hex(4)}")


@pytest.fixture
def user(api: LiveServer, key: str) -> Iterator[httpx.Client]:
    with api_client(api.api, key) as c:
        yield c


def new_session(client: httpx.Client, prompt: str = "Watch me") -> str:
    sid: str = client.post("/sessions", json={"prompt": prompt}).json()["id"]
    return sid


def message(client: httpx.Client, sid: str, text: str) -> None:
    assert client.post(f"/sessions/{sid}:sendMessage", json={"prompt": text}).json() == {}


def assert_error(reader: EventReader, status: int, code: str) -> None:
    try:
        assert reader.status == status
        reader.response.read()
        assert reader.headers["content-type"] == "application/json"
        assert reader.response.json()["error"]["status"] == code
    finally:
        reader.close()


# --- the API alone ---------------------------------------------------------------------


def test_alt_json_or_none_answers_as_before_and_any_other_value_is_400(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    plain = user.get(f"/sessions/{sid}")
    assert user.get(f"/sessions/{sid}", params={"alt": "json"}).content == plain.content
    listed = user.get(f"/sessions/{sid}/activities")
    assert user.get(f"/sessions/{sid}/activities", params={"alt": "json"}).content == listed.content
    assert user.get("/sessions", params={"alt": "json"}).json() == user.get("/sessions").json()
    for path in (f"/sessions/{sid}", "/sessions", f"/sessions/{sid}/activities"):
        answer = user.get(path, params={"alt": "proto"})
        assert answer.status_code == 400, path
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert "alt" in answer.json()["error"]["message"]


def test_a_bad_last_event_id_or_filter_is_400_before_any_stream(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    path = f"/sessions/{sid}/activities"
    for bad in ("abc", "-5", "1e9", "9" * 21):
        assert_error(
            stream(api, path, key, headers={"Last-Event-ID": bad}), 400, "INVALID_ARGUMENT"
        )
    bad_filter = {"filter": "nonsense > 3"}
    assert_error(stream(api, path, key, params=bad_filter), 400, "INVALID_ARGUMENT")
    assert_error(stream(api, "/sessions", key, params=bad_filter), 400, "INVALID_ARGUMENT")


def test_another_users_session_is_404_and_no_key_is_401_before_any_stream(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    other = provision_user(api.settings, name=f"o-{secrets.token_hex(4)}")
    for path in (f"/sessions/{sid}", f"/sessions/{sid}/activities"):
        assert_error(stream(api, path, other), 404, "NOT_FOUND")
    assert_error(stream(api, f"/sessions/{MISSING_SESSION_ID}", key), 404, "NOT_FOUND")
    assert_error(stream(api, "/sessions", ""), 401, "UNAUTHENTICATED")


def test_a_stream_is_an_event_stream_that_keeps_alive_while_nothing_happens(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    with stream(api, f"/sessions/{sid}/activities", key) as reader:
        assert reader.status == 200
        assert reader.headers["content-type"] == "text/event-stream"
        assert reader.headers["cache-control"] == "no-cache"
        assert reader.headers["x-accel-buffering"] == "no"
        comments = [reader.next(comments=True) for _ in range(3)]
    assert [c.comment for c in comments] == ["keep-alive"] * 3


def activity_events(reader: EventReader, count: int) -> list[SSE]:
    events = [reader.next() for _ in range(count)]
    assert all(e.event == "activity" for e in events)
    return events


def test_the_activities_stream_sends_history_then_live_activities_and_resumes_after_an_id(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    for n in range(3):
        message(user, sid, f"before {n}")
    path = f"/sessions/{sid}/activities"
    with stream(api, path, key) as reader:
        history = activity_events(reader, 3)
        for n in range(3):
            message(user, sid, f"live {n}")
        live = activity_events(reader, 3)
    events = history + live
    assert [e.json()["userMessaged"]["userMessage"] for e in events] == [
        "before 0",
        "before 1",
        "before 2",
        "live 0",
        "live 1",
        "live 2",
    ]
    assert [e.json() for e in events] == list_activities(user, sid)
    assert_as_get(user, sid, events)

    # A reconnect after the fourth: the fifth and sixth, then what comes next.
    with stream(api, path, key, headers={"Last-Event-ID": events[3].id or ""}) as again:
        resumed = activity_events(again, 2)
        message(user, sid, "after the reconnect")
        (newest,) = activity_events(again, 1)
    assert [e.id for e in resumed] == [e.id for e in events[4:]]
    assert newest.json()["userMessaged"]["userMessage"] == "after the reconnect"
    # Past the newest: nothing but what comes later.
    with stream(api, path, key, headers={"Last-Event-ID": newest.id or ""}) as tail:
        message(user, sid, "the last")
        (last,) = activity_events(tail, 1)
    assert last.json()["userMessaged"]["userMessage"] == "the last"


def test_the_activities_stream_applies_the_filter_to_history_and_live_alike(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    for n in range(4):
        message(user, sid, f"m{n}")
    items = list_activities(user, sid)
    since = items[2]["createTime"]
    path = f"/sessions/{sid}/activities"
    expected_history = list_activities(user, sid, filter=f'create_time >= "{since}"')
    assert len(expected_history) == 2
    with (
        stream(api, path, key, params={"filter": f'create_time >= "{since}"'}) as after,
        stream(api, path, key, params={"createTime": since}) as plain,
        stream(api, path, key, params={"filter": f'create_time < "{since}"'}) as before,
    ):
        assert [e.json() for e in activity_events(after, 2)] == expected_history
        assert [e.json() for e in activity_events(plain, 2)] == expected_history
        assert [e.json() for e in activity_events(before, 2)] == items[:2]
        message(user, sid, "live")
        assert activity_events(after, 1)[0].json()["userMessaged"]["userMessage"] == "live"
        assert activity_events(plain, 1)[0].json()["userMessaged"]["userMessage"] == "live"
        # The live one is after the bound: this stream only keeps itself alive.
        assert before.next(comments=True).comment == "keep-alive"


def test_the_session_stream_sends_the_session_then_each_change_and_ends_when_deleted(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    sid = new_session(user)
    with stream(api, f"/sessions/{sid}", key) as reader:
        first = reader.next()
        assert first.event == "session"
        assert first.data == user.get(f"/sessions/{sid}").text
        assert user.post(f"/sessions/{sid}:archive").status_code == 200
        archived = reader.next()
        assert archived.json()["archived"] is True
        assert archived.data == user.get(f"/sessions/{sid}").text
        message(user, sid, "a change of update time")
        touched = reader.next()
        assert touched.json()["updateTime"] > archived.json()["updateTime"]
        assert user.delete(f"/sessions/{sid}").status_code == 200
        reader.wait_ended()


def test_the_list_stream_sends_the_callers_sessions_as_they_are_created_and_change(
    api: LiveServer, user: httpx.Client, key: str
) -> None:
    other_key = provision_user(api.settings, name=f"o-{secrets.token_hex(4)}")
    with (
        stream(api, "/sessions", key) as everything,
        stream(api, "/sessions", key, params={"filter": "archived = false"}) as unarchived,
        api_client(api.api, other_key) as other,
    ):
        other_sid = new_session(other, "not yours")
        sid = new_session(user, "yours")
        created = everything.next()
        assert created.event == "session"
        assert created.data == user.get(f"/sessions/{sid}").text
        assert unarchived.next().data == created.data
        user.post(f"/sessions/{sid}:archive")
        assert everything.next().json()["archived"] is True  # a dashboard drops it
        user.post(f"/sessions/{sid}:unarchive")
        back = everything.next()
        assert "archived" not in back.json()  # false: omitted, as sessions.get has it
        # The filtered stream never saw it archived; it sees it back.
        assert unarchived.next().data == back.data
        other.post(f"/sessions/{other_sid}:archive")
        second = new_session(user, "yours too")
        assert everything.next().json()["id"] == second
        assert unarchived.next().json()["id"] == second


def test_streams_end_cleanly_when_the_server_stops(
    server_settings: Settings, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(
        update={"data_dir": tmp_path / "d", "sse_keepalive_seconds": 60.0}
    )
    live = LiveServer(settings).start()
    try:
        key = provision_user(live.settings, name=f"stop-{secrets.token_hex(3)}")
        with api_client(live.api, key) as c:
            sid = new_session(c)
        readers = [
            stream(live, f"/sessions/{sid}/activities", key),
            stream(live, f"/sessions/{sid}", key),
            stream(live, "/sessions", key),
        ]
        assert readers[1].next().event == "session"  # all three are open and live
    finally:
        live.stop()
    assert not live.running
    for reader in readers:
        reader.wait_ended()
        reader.close()


def test_open_streams_are_neither_timed_out_nor_evicted_as_idle_connections(
    server_settings: Settings, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(
        update={
            "data_dir": tmp_path / "d",
            "http_max_connections": 2,
            "http_header_timeout_seconds": 0.5,
            "sse_keepalive_seconds": 0.2,
        }
    )
    with LiveServer(settings) as live:
        key = provision_user(live.settings, name=f"cap-{secrets.token_hex(3)}")
        with api_client(live.api, key) as c:
            sid = new_session(c)
        with stream(live, f"/sessions/{sid}", key) as one, stream(live, "/sessions", key) as two:
            assert one.next().event == "session"
            # Well past the deadline for a request's headers: both still open and live.
            for _ in range(5):
                assert two.next(comments=True).comment == "keep-alive"
            # At the cap, a newcomer is refused; it does not take a stream's place.
            assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 503
            assert one.next(comments=True).comment == "keep-alive"
            assert two.next(comments=True).comment == "keep-alive"
            assert not one.ended.is_set()
            assert not two.ended.is_set()
