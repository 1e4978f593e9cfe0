"""Real `openjules worker` processes: a worker killed with SIGKILL mid-work is replaced and
the session completes as if nothing happened; several workers share 50 sessions, each run
by one worker at a time. Under the Temporal runner too (three workers on one task queue),
and a Temporal server stopped and started again mid-run loses no session."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, TemporalDevServer, provision_user
from openjules.testing import register_source as register
from tests.conftest import TEMPORAL, backends_with_temporal
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import Worker, call, scripted, turn_of
from tests.support import TERMINAL, api_client, kinds, list_activities, wait_for_state

pytestmark = needs_bubblewrap
backend = backends_with_temporal()

CRASH_SCRIPT = [
    call("propose_plan", steps=[{"title": "Write two files"}]),
    call("write_file", path="first.txt", content="one\n"),
    call("shell", command="sleep 3; echo slept > slept.txt"),
    call("write_file", path="second.txt", content="two\n"),
    call("complete_step", title="Wrote the files"),
    call("finish", summary="Two files.", commit_message="Add two files"),
]
SHELL_TURN = 2


def run_to_completion(client: httpx.Client, source: str) -> dict[str, Any]:
    sid = client.post(
        "/sessions", json={"prompt": "Write two files", "sourceContext": {"source": source}}
    ).json()["id"]
    return wait_for_state(client, sid, TERMINAL, timeout=90)


def test_a_worker_killed_mid_work_is_replaced_and_the_session_completes_unchanged(
    api: LiveServer, user: httpx.Client, repo: Path, tmp_path: Path
) -> None:
    source = register(
        api.settings, location=str(repo), owner="acme", repo=f"crash-{secrets.token_hex(3)}"
    )
    # The reference: the same script, uninterrupted.
    with FakeModel(scripted(CRASH_SCRIPT)) as model:
        worker = Worker(settings=api.settings, model=model, home=tmp_path / "ref")
        try:
            reference = run_to_completion(user, source)
        finally:
            worker.stop()
    expected_kinds = kinds(list_activities(user, reference["id"]))

    with FakeModel(scripted(CRASH_SCRIPT)) as model:
        first = Worker(settings=api.settings, model=model, home=tmp_path / "w1")
        try:
            sid = user.post(
                "/sessions",
                json={
                    "prompt": "Write two files",
                    "sourceContext": {"source": source},
                },
            ).json()["id"]
            deadline = time.monotonic() + 60
            # The model has handed out the `sleep 3` command: the worker is mid-command.
            while not any(turn_of(r) == SHELL_TURN for r in model.requests):
                assert time.monotonic() < deadline, first.log.read_text()
                time.sleep(0.02)
            time.sleep(0.5)
        finally:
            first.kill()
        assert user.get(f"/sessions/{sid}").json()["state"] == "IN_PROGRESS"
        second = Worker(settings=api.settings, model=model, home=tmp_path / "w2")
        try:
            session = wait_for_state(user, sid, TERMINAL, timeout=90)
        finally:
            second.stop()

    assert session["state"] == "COMPLETED", second.log.read_text()
    items = list_activities(user, sid)
    assert kinds(items) == expected_kinds
    assert len({a["id"] for a in items}) == len(items)
    assert (
        session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
        == reference["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    )
    patch = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert "+++ b/first.txt" in patch
    assert "+++ b/second.txt" in patch
    assert "+++ b/slept.txt" in patch


PER_SESSION = [
    call("propose_plan", steps=[{"title": "Write the file"}]),
    call("write_file", path="result.txt", content="done\n"),
    call("finish", summary="Done.", commit_message="Write the result"),
]


def test_workers_share_fifty_sessions_each_run_once_at_a_time(
    api: LiveServer, user: httpx.Client, repo: Path, tmp_path: Path, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("several worker processes are a PostgreSQL deployment")
    source = register(
        api.settings, location=str(repo), owner="acme", repo=f"fleet-{secrets.token_hex(3)}"
    )
    # Each with a data directory of its own, as on machines of their own.
    count = 3 if backend == TEMPORAL else 2
    with FakeModel(scripted(PER_SESSION)) as model:
        workers = [
            Worker(settings=api.settings, model=model, home=tmp_path / f"w{i}", concurrency=3)
            for i in range(count)
        ]
        try:
            ids = [
                user.post(
                    "/sessions",
                    json={
                        "prompt": f"Task {i}",
                        "sourceContext": {"source": source},
                    },
                ).json()["id"]
                for i in range(50)
            ]
            sessions = [wait_for_state(user, sid, TERMINAL, timeout=180) for sid in ids]
        finally:
            for worker in workers:
                worker.stop()
        prompts = Counter(
            next(m["content"] for m in r["messages"] if m["role"] == "user") for r in model.requests
        )

    failed = {
        s["id"]: list_activities(user, s["id"])[-1].get("sessionFailed")
        for s in sessions
        if s["state"] != "COMPLETED"
    }
    assert failed == {}
    for sid in ids:
        assert kinds(list_activities(user, sid)) == [
            "planGenerated",
            "planApproved",
            "sessionCompleted",
        ]
    # Each session asked the model exactly once per step: no second worker ran it too.
    assert prompts == Counter({f"Task {i}": len(PER_SESSION) for i in range(50)})
    # Every process took part: each keeps its own mirror of the source once it runs one.
    assert all((tmp_path / f"w{i}" / "data" / "mirrors").is_dir() for i in range(count))


SLOW_SESSION = [
    call("propose_plan", steps=[{"title": "Write the file"}]),
    call("write_file", path="result.txt", content="done\n"),
    call("shell", command="cat result.txt"),
    call("complete_step", title="Wrote the file"),
    call("finish", summary="Done.", commit_message="Write the result"),
]


def test_sessions_complete_after_the_temporal_server_restarts_mid_run(
    backend: str, server_settings: Settings, repo: Path, tmp_path: Path
) -> None:
    """Temporal is down for longer than a heartbeat may be missed: running sessions'
    attempts time out and are retried once it is back, and sessions created while it was
    down (their wake-up lost) are found in the jobs table. Every one completes."""
    if backend != TEMPORAL:
        pytest.skip("the Temporal runner's own failure")
    with TemporalDevServer(directory=tmp_path / "temporal") as temporal:
        settings = server_settings.model_copy(
            update={"data_dir": tmp_path / "api", "temporal_address": temporal.address}
        )
        with LiveServer(settings) as api:
            key = provision_user(settings, name=f"restart-{secrets.token_hex(4)}")
            source = register(
                settings, location=str(repo), owner="acme", repo=f"restart-{secrets.token_hex(3)}"
            )
            # Each turn takes a while, so that every session is mid-run when Temporal goes.
            with (
                FakeModel(scripted(SLOW_SESSION), latency=0.5) as model,
                api_client(api.api, key) as user,
            ):
                workers = [
                    Worker(settings=settings, model=model, home=tmp_path / f"w{i}", concurrency=5)
                    for i in range(2)
                ]

                def create(prompt: str) -> str:
                    body = {"prompt": prompt, "sourceContext": {"source": source}}
                    return str(user.post("/sessions", json=body).json()["id"])

                try:
                    ids = [create(f"Task {i}") for i in range(8)]
                    deadline = time.monotonic() + 60
                    while len(model.requests) < 12:  # most sessions have started
                        assert time.monotonic() < deadline, workers[0].log.read_text()
                        time.sleep(0.05)
                    down = settings.temporal_heartbeat_timeout_seconds + 2
                    outage = threading.Thread(target=temporal.restart, kwargs={"down_for_s": down})
                    outage.start()
                    time.sleep(1)
                    ids += [create(f"Task {i}") for i in range(8, 10)]  # while it is down
                    outage.join()
                    sessions = [wait_for_state(user, sid, TERMINAL, timeout=120) for sid in ids]
                finally:
                    for worker in workers:
                        worker.stop()
                runs = {sid: list_activities(user, sid) for sid in ids}

    assert [s["state"] for s in sessions] == ["COMPLETED"] * 10, workers[0].log.read_text()
    for items in runs.values():
        assert kinds(items) == [
            "planGenerated",
            "planApproved",
            "progressUpdated",
            "progressUpdated",
            "sessionCompleted",
        ]
        assert len({a["id"] for a in items}) == len(items)
    for session in sessions:
        assert "+++ b/result.txt" in session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
