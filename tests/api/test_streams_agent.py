"""Watching real runs live (``alt=sse``), the agent in the server's own workers, on both
backends: a fake model over HTTP, real git and bubblewrap. A client sees every activity
as it commits, once, in order, exactly as activities.list has it afterwards; one that
reconnects with Last-Event-ID misses nothing and sees nothing twice."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, Fault, LiveServer, Reply, provision_user
from openjules.testing import register_source as register
from tests.engine.agent_support import call, needs_bubblewrap
from tests.sse_support import SSE, assert_as_get, stream, until_completed, until_state
from tests.support import TERMINAL, api_client, kinds, list_activities, make_repo, wait_for_state

pytestmark = needs_bubblewrap

WORK = [
    call("propose_plan", steps=[{"title": "Greet the world"}]),
    call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
    call("shell", command="python3 app.py"),
    call("complete_step", title="Greeted the world", description="Changed the greeting."),
    call("finish", summary="The app greets the world.", commit_message="Greet the world"),
]
EXPECTED = [
    "planGenerated",
    "planApproved",
    "progressUpdated",
    "progressUpdated",
    "sessionCompleted",
]
# The model's first answer comes a second late, so the streams are open before the
# session has done anything.
LATE_START: list[Reply | Fault] = [Fault(503, retry_after=1.0)]


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


@pytest.fixture(scope="module")
def agent(
    server_settings: Settings, model: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = server_settings.model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("streams-agent"),
            "workers": 2,
            "model_base_url": model.base_url,
            "model_api_key": "sk-fake",
            "model": "fake-model",
            "model_max_retries": 2,
            "model_timeout_seconds": 10.0,
            "sse_keepalive_seconds": 0.5,
        }
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def source(agent: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = make_repo(tmp_path_factory.mktemp("greeter"), {"app.py": "print('hello')\n"})
    return register(agent.settings, location=str(repo), owner="acme", repo="stream-greeter")


def start(client: httpx.Client, source: str) -> str:
    sid: str = client.post(
        "/sessions",
        json={"prompt": "Greet the world", "sourceContext": {"source": source}},
    ).json()["id"]
    return sid


def watch_a_run(
    live: LiveServer, key: str, source: str, *, on_open: Callable[[], None] | None = None
) -> None:
    """Open the three streams, run a session to completion (``on_open`` is called once
    they are open), check what they saw."""
    with api_client(live.api, key) as client, stream(live, "/sessions", key) as listed:
        sid = start(client, source)
        with (
            stream(live, f"/sessions/{sid}/activities", key) as activities,
            stream(live, f"/sessions/{sid}", key) as session,
        ):
            if on_open is not None:
                on_open()
            events = activities.collect(until_completed)
            states = session.collect(until_state("COMPLETED"))
            seen = listed.collect(until_state("COMPLETED", sid))
        assert wait_for_state(client, sid, TERMINAL)["state"] == "COMPLETED"
        items = list_activities(client, sid)
        assert kinds(items) == EXPECTED
        assert [e.json() for e in events] == items
        assert len({e.id for e in events}) == len(events)
        assert_as_get(client, sid, events)
        # The session stream: the session on every change, last as sessions.get has it.
        assert states[-1].data == client.get(f"/sessions/{sid}").text
        # States in lifecycle order. Each event is the session as it is when the change is
        # heard, so a state that lasted less than that (on SQLite across processes, the
        # 0.25 s poll) may be folded into the next; the activities are the full record.
        lifecycle = ["QUEUED", "PLANNING", "IN_PROGRESS", "COMPLETED"]
        seen_states = [s.json()["state"] for s in states]
        assert seen_states == sorted(seen_states, key=lifecycle.index)
        assert all(a.data != b.data for a, b in itertools.pairwise(states))
        # The list stream: the session from its creation to its completion.
        mine = [e.json() for e in seen if e.json()["id"] == sid]
        assert mine[0]["state"] in ("QUEUED", "PLANNING")
        assert mine[-1]["state"] == "COMPLETED"


def test_a_client_watching_a_run_sees_every_activity_once_in_order_as_the_list_has_them(
    agent: LiveServer, model: FakeModel, source: str
) -> None:
    model.push(*LATE_START, *WORK)
    watch_a_run(agent, provision_user(agent.settings, name=f"a-{secrets.token_hex(4)}"), source)


def reconnect_mid_run(live: LiveServer, key: str, sid: str, until: int = 2) -> list[SSE]:
    """Read ``until`` activities, leave, come back with Last-Event-ID, read to the end."""
    path = f"/sessions/{sid}/activities"
    with stream(live, path, key) as first:
        before = [first.next() for _ in range(until)]
    with stream(live, path, key, headers={"Last-Event-ID": before[-1].id or ""}) as second:
        after = second.collect(until_completed)
    return before + after


def test_a_client_that_reconnects_mid_run_with_last_event_id_misses_nothing_and_repeats_nothing(
    agent: LiveServer, model: FakeModel, source: str
) -> None:
    key = provision_user(agent.settings, name=f"r-{secrets.token_hex(4)}")
    model.push(*LATE_START, WORK[0], call("shell", command="sleep 1"), *WORK[1:])
    with api_client(agent.api, key) as client:
        sid = start(client, source)
        received = reconnect_mid_run(agent, key, sid)
        items = list_activities(client, sid)
    assert [e.json() for e in received] == items
    assert len({e.id for e in received}) == len(received)
    assert kinds(items)[:2] == ["planGenerated", "planApproved"]
    assert kinds(items)[-1] == "sessionCompleted"
