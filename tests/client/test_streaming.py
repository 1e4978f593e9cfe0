"""Following sessions with the SDK, ``Client`` and ``AsyncClient``, on both backends (a
server without workers: every activity is one the test makes, a message or a cancel):

- ``stream_activities`` through a TCP proxy that is cut mid-stream while activities are
  committed, then restored: every activity once, in createTime order, and the reconnect
  carried ``Last-Event-ID`` (seen on the wire, in the requests the proxy forwarded);
- with ``until_done`` it ends after a cancelled session's ``sessionFailed`` (the last one,
  not an earlier ending the session was woken from); ``after=`` resumes after an activity;
  a stream that ended or was left early is closed by the client;
- ``wait`` returns at once when the state already matches, follows a session live until
  it changes, and times out with ``WaitTimeout`` carrying the session as it was;
- a wait or a stream on a session deleted meanwhile raises ``NotFound``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from openjules.client import DONE, Activity, Client, NotFound, State, WaitTimeout
from openjules.store.clock import parse_timestamp_ns
from openjules.store.session_actions import CANCELLED_REASON
from openjules.testing import LiveServer
from tests.agent_kit import wait_until
from tests.client.conftest import OpenSDK
from tests.client.lifecycle_support import closing, kind_of
from tests.client.stream_support import Collector, TappedProxy

# The timeout of a wait meant to give up.
SHORT_WAIT_S = 0.25
# How long anything that should happen may take before the test fails.
WAIT_S = 30.0


@pytest.fixture
def producer(server: LiveServer, api_key: str) -> Iterator[Client]:
    """The test's own hands on the server, straight to it (never through the proxy)."""
    with Client(base_url=server.url, api_key=api_key) as jules:
        yield jules


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[TappedProxy]:
    with TappedProxy(target_port=server.settings.port) as tapped:
        yield tapped


def via(proxy: TappedProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def say(jules: Client, session: str, *texts: str) -> None:
    for text in texts:
        jules.send_message(session, text)


def said(activities: list[Activity]) -> list[str]:
    return [a.user_messaged.user_message for a in activities if a.user_messaged]


def assert_once_in_order(streamed: list[Activity], listed: list[Activity]) -> None:
    """What a stream yielded is exactly what activities.list has, each once, oldest first."""
    assert [a.id for a in streamed] == [a.id for a in listed]
    times = [parse_timestamp_ns(a.create_time) for a in streamed]
    assert times == sorted(set(times)), "strictly increasing createTime"


def test_a_stream_cut_mid_way_resumes_with_last_event_id_missing_and_repeating_nothing(
    api_key: str,
    producer: Client,
    proxy: TappedProxy,
    open_sdk: OpenSDK,
) -> None:
    session = producer.create_session(prompt="Stream through a flaky link").id
    say(producer, session, "history 1", "history 2", "history 3")
    jules = open_sdk(via(proxy), api_key)
    watched = Collector(jules.stream_activities(session))
    watched.wait_for(3)
    say(producer, session, "live 1", "live 2")
    before_cut = watched.wait_for(5)
    path = f"/v1alpha/sessions/{session}/activities"
    opened = proxy.streams(path)

    proxy.cut()
    # Committed while the client has no connection (its reconnects are refused).
    say(producer, session, "outage 1", "outage 2", "outage 3")
    proxy.restore()
    watched.wait_for(8)
    say(producer, session, "after 1", "after 2")
    watched.wait_for(10)
    producer.cancel_session(session)
    streamed = watched.join()

    listed = list(producer.list_activities(session))
    assert_once_in_order(streamed, listed)
    assert said(streamed) == [
        *("history 1", "history 2", "history 3", "live 1", "live 2"),
        *("outage 1", "outage 2", "outage 3", "after 1", "after 2"),
    ]
    assert kind_of(streamed[-1]) == "sessionFailed"
    # On the wire: the stream opened from the start; the first one after the cut resumed
    # after the last activity the client had, so the server sent no history again.
    assert [r.headers.get("last-event-id") for r in opened] == [None]
    reopened = proxy.streams(path)[len(opened) :]
    assert reopened, "the client did not reconnect"
    assert reopened[0].headers.get("last-event-id") == str(
        parse_timestamp_ns(before_cut[-1].create_time)
    )


def test_until_done_ends_after_a_cancelled_sessions_session_failed(
    api_key: str, producer: Client, proxy: TappedProxy, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Cancel me").id
    path = f"/v1alpha/sessions/{session}/activities"
    say(producer, session, "first")
    jules = open_sdk(via(proxy), api_key)
    watched = Collector(jules.stream_activities(session))
    watched.wait_for(1)
    producer.cancel_session(session)
    streamed = watched.join()
    assert [kind_of(a) for a in streamed] == ["userMessaged", "sessionFailed"]
    assert streamed[-1].session_failed is not None
    assert streamed[-1].session_failed.reason == CANCELLED_REASON
    # Ended, the client closed its connection.
    wait_until(lambda: not proxy.open_streams(path), what="the stream closing")


def test_a_stream_left_early_leaves_no_connection_open(
    api_key: str, producer: Client, proxy: TappedProxy, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Leave me").id
    path = f"/v1alpha/sessions/{session}/activities"
    say(producer, session, "first", "second")
    jules = open_sdk(via(proxy), api_key)
    with closing(jules.stream_activities(session, until_done=False)) as stream:
        assert said([next(stream)]) == ["first"]
        assert proxy.open_streams(path) == 1
    wait_until(lambda: not proxy.open_streams(path), what="the stream closing")


def test_until_done_goes_past_an_ending_the_session_was_woken_from(
    server: LiveServer, api_key: str, producer: Client, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Cancel me twice").id
    say(producer, session, "first")
    producer.cancel_session(session)
    # A follow-up wakes the failed session (QUEUED again).
    say(producer, session, "again")
    assert producer.get_session(session).state is State.QUEUED
    jules = open_sdk(server.url, api_key)
    watched = Collector(jules.stream_activities(session))
    watched.wait_for(3)
    producer.cancel_session(session)
    streamed = watched.join()
    expected = ["userMessaged", "sessionFailed", "userMessaged", "sessionFailed"]
    assert [kind_of(a) for a in streamed] == expected
    assert_once_in_order(streamed, list(producer.list_activities(session)))


def test_after_resumes_after_the_given_activity(
    server: LiveServer, api_key: str, producer: Client, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Resume after the second").id
    say(producer, session, "one", "two", "three", "four")
    producer.cancel_session(session)
    listed = list(producer.list_activities(session))
    jules = open_sdk(server.url, api_key)
    streamed = list(jules.stream_activities(session, after=listed[1]))
    assert [a.id for a in streamed] == [a.id for a in listed[2:]]
    assert said(streamed) == ["three", "four"]


def test_wait_returns_at_once_when_the_state_already_matches(
    server: LiveServer, api_key: str, producer: Client, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Already there").id
    jules = open_sdk(server.url, api_key)
    # A timeout only so that a wait that does not return fails rather than hangs.
    assert jules.wait(session, until={State.QUEUED}, timeout=WAIT_S).state is State.QUEUED
    producer.pause_session(session)
    paused = jules.wait(session, timeout=WAIT_S)  # SETTLED by default
    assert paused.state is State.PAUSED
    assert paused.id == session
    producer.cancel_session(session)
    assert jules.wait(session, until=DONE, timeout=WAIT_S).state is State.FAILED


def test_wait_follows_the_session_until_its_state_changes(
    api_key: str, producer: Client, proxy: TappedProxy, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Wait for me").id
    path = f"/v1alpha/sessions/{session}"
    jules = open_sdk(via(proxy), api_key)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(jules.wait, session, until=DONE, timeout=WAIT_S)
        # Cancelled only once the wait follows the session, so it hears of the change.
        wait_until(lambda: proxy.open_streams(path), what="the wait following the session")
        assert not waiting.done()
        producer.cancel_session(session)
        ended = waiting.result(timeout=WAIT_S)
    assert ended.state is State.FAILED
    assert ended.id == session
    # Done waiting, the client closed the session's stream.
    wait_until(lambda: not proxy.open_streams(path), what="the wait's stream closing")


def test_a_wait_and_a_stream_on_a_session_deleted_meanwhile_raise_not_found(
    api_key: str, producer: Client, proxy: TappedProxy, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Delete me").id
    say(producer, session, "first")
    jules = open_sdk(via(proxy), api_key)
    watched = Collector(jules.stream_activities(session))
    watched.wait_for(1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(jules.wait, session, until=DONE, timeout=WAIT_S)
        wait_until(
            lambda: proxy.open_streams(f"/v1alpha/sessions/{session}"),
            what="the wait following the session",
        )
        producer.delete_session(session)
        with pytest.raises(NotFound):
            waiting.result(timeout=WAIT_S)
    with pytest.raises(NotFound):
        watched.join()


def test_wait_times_out_with_the_session_as_it_was(
    server: LiveServer, api_key: str, producer: Client, open_sdk: OpenSDK
) -> None:
    session = producer.create_session(prompt="Never done").id
    jules = open_sdk(server.url, api_key)
    with pytest.raises(WaitTimeout) as queued:
        jules.wait(session, until=DONE, timeout=SHORT_WAIT_S)
    assert queued.value.session.id == session
    assert queued.value.session.state is State.QUEUED
    assert "QUEUED" in str(queued.value)

    producer.pause_session(session)
    with pytest.raises(WaitTimeout) as paused:
        jules.wait(session, until={State.COMPLETED}, timeout=SHORT_WAIT_S)
    assert paused.value.session.state is State.PAUSED
    # The session the wait saw last, as get_session has it.
    assert paused.value.session == producer.get_session(session)
