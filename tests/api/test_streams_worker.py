"""Watching runs live (``alt=sse``) when the agent runs in a separate ``openjules worker``
process: the API process hears of what the worker commits through PostgreSQL's
LISTEN/NOTIFY, or on SQLite through its change poll, and streams it the same way."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, provision_user
from openjules.testing import register_source as register
from tests.api.test_streams_agent import EXPECTED, WORK, reconnect_mid_run, start, watch_a_run
from tests.engine.agent_support import call, needs_bubblewrap
from tests.engine.worker_support import Worker, scripted
from tests.support import api_client, kinds, list_activities, make_repo

pytestmark = needs_bubblewrap


@pytest.fixture(scope="module")
def api(
    server_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The HTTP API alone (workers=0): sessions are run by the worker process."""
    settings = server_settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("streams-api"), "sse_keepalive_seconds": 0.5}
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def source(api: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = make_repo(tmp_path_factory.mktemp("greeter"), {"app.py": "print('hello')\n"})
    return register(api.settings, location=str(repo), owner="acme", repo="worker-greeter")


def test_a_run_by_a_worker_process_streams_like_one_run_in_process(
    api: LiveServer, source: str, tmp_path: Path
) -> None:
    key = provision_user(api.settings, name=f"w-{secrets.token_hex(4)}")
    workers: list[Worker] = []
    with FakeModel(scripted(WORK)) as model:
        try:
            # No worker until the streams are open: the session waits, queued.
            watch_a_run(
                api,
                key,
                source,
                on_open=lambda: workers.append(
                    Worker(settings=api.settings, model=model, home=tmp_path / "w")
                ),
            )
        finally:
            for worker in workers:
                worker.stop()


def test_a_reconnect_with_last_event_id_mid_run_by_a_worker_process_loses_nothing(
    api: LiveServer, source: str, tmp_path: Path
) -> None:
    key = provision_user(api.settings, name=f"r-{secrets.token_hex(4)}")
    script = [WORK[0], call("shell", command="sleep 1"), *WORK[1:]]
    with FakeModel(scripted(script)) as model, api_client(api.api, key) as client:
        sid = start(client, source)
        worker = Worker(settings=api.settings, model=model, home=tmp_path / "w")
        try:
            received = reconnect_mid_run(api, key, sid)
        finally:
            worker.stop()
        items = list_activities(client, sid)
    assert [e.json() for e in received] == items
    assert len({e.id for e in received}) == len(received)
    assert kinds(items) == [*EXPECTED[:2], "progressUpdated", *EXPECTED[2:]]
