"""``openjules serve --http-workers 2`` as a real process, both backends: every request
answered whichever process takes it, a session created on one connection read on others,
a session the agent works (the fake model, the real sandbox) run exactly once and
streamed to every open stream, a killed HTTP worker replaced while the others go on, and
no process left behind after Ctrl-C, SIGTERM, or the parent being killed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from openjules.settings import Settings
from openjules.testing import FakeModel, register_source
from tests.agent_kit import Scripts
from tests.api.test_streams_agent import EXPECTED, WORK
from tests.cli.support import ServeProcess, Target, run_openjules
from tests.engine.agent_support import needs_bubblewrap
from tests.sse_support import EventReader, until_completed
from tests.support import API_KEY_HEADER, kinds, list_activities, make_repo, wait_for_state

PROCESSES = 2
GONE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WorkersTarget(Target):
    """The target's database, served by ``--http-workers 2``."""

    def args(self) -> list[str]:
        return [*super().args(), "--http-workers", str(PROCESSES)]


def _serving(target: Target) -> WorkersTarget:
    return WorkersTarget(
        backend=target.backend,
        home=target.home,
        data_dir=target.data_dir,
        database_url=target.database_url,
        extra_env=target.extra_env,
    )


def _children(pid: int) -> set[int]:
    """The pids of ``pid``'s child processes (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(predicate: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def _workers_of(server: ServeProcess) -> set[int]:
    """The HTTP worker processes, once every one of them serves (the first may answer
    /healthz before the others listen)."""
    _wait(
        lambda: f"{PROCESSES} HTTP worker processes serving" in server.stderr(),
        lambda: f"the server says when every process serves:\n{server.output()}",
    )
    assert f"{PROCESSES} HTTP worker processes" in server.stdout(), "the listening line"
    workers = _children(server.proc.pid)
    assert len(workers) == PROCESSES, server.output()
    return workers


def _many_gets(server: ServeProcess, key: str, path: str, count: int = 100) -> list[str]:
    """``count`` GETs, each on a new connection (so each process gets some); the bodies."""

    def get(_: int) -> str:
        response = httpx.get(f"{server.api}{path}", headers={API_KEY_HEADER: key}, timeout=30)
        assert response.status_code == 200, response.text
        return response.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(get, range(count)))


@needs_bubblewrap
def test_two_processes_answer_alike_and_run_a_session_once(
    fresh_target: Target, tmp_path: Path
) -> None:
    scripts = Scripts()
    with FakeModel(scripts) as model:
        target = _serving(
            fresh_target.with_env(
                OPENJULES_MAX_CONCURRENT_SESSIONS="",  # the default: this server runs sessions
                OPENJULES_MODEL_BASE_URL=model.base_url,
                OPENJULES_MODEL_API_KEY="sk-fake",
                OPENJULES_MODEL="fake-model",
                OPENJULES_MODEL_MAX_RETRIES="0",
                OPENJULES_SSE_KEEPALIVE_SECONDS="1",
                # An hour: on SQLite too, only the processes telling each other of their
                # changes can bring the runner's steps to the other's streams.
                OPENJULES_CHANGE_POLL_SECONDS="3600",
            )
        )
        with ServeProcess(target, log_dir=tmp_path / "logs") as server:
            key = server.printed_key()
            assert key is not None, server.output()
            _workers_of(server)

            with server.client(key) as client:
                created = client.post("/sessions", json={"prompt": "Repoless question"})
                assert created.status_code == 200, created.text
                sid = created.json()["id"]
            # Read on new connections, so by both processes (its state moves on: the
            # agent fails it, having no script for it).
            bodies = _many_gets(server, key, f"/sessions/{sid}")
            assert {(b["id"], b["prompt"]) for b in map(json.loads, bodies)} == {
                (sid, "Repoless question")
            }

            repo = make_repo(tmp_path / "greeter", {"app.py": "print('hello')\n"})
            settings = Settings(data_dir=target.data_dir, database_url=target.database_url or "")
            source = register_source(settings, location=str(repo), owner="acme", repo="greeter")
            prompt = scripts.prompt("Greet the world", WORK)
            with server.client(key) as client:
                response = client.post(
                    "/sessions", json={"prompt": prompt, "sourceContext": {"source": source}}
                )
                assert response.status_code == 200, response.text
                run = response.json()["id"]
                # Several streams, each on a connection of its own: the processes without
                # the runner stream what it does too.
                readers = [
                    EventReader(
                        server.api, f"/sessions/{run}/activities", key=key, params={"alt": "sse"}
                    )
                    for _ in range(4)
                ]
                try:
                    streamed = [reader.collect(until_completed) for reader in readers]
                finally:
                    for reader in readers:
                        reader.close()
                session = wait_for_state(client, run, {"COMPLETED", "FAILED"}, timeout=120)
                assert session["state"] == "COMPLETED", session
                items = list_activities(client, run)
            assert kinds(items) == EXPECTED, "completed once: one runner"
            for events in streamed:
                assert [e.json() for e in events] == items
            assert [scripts.asked(prompt, turn) for turn in range(len(WORK))] == [1] * len(WORK)
            workers = _children(server.proc.pid)
            # Ctrl-C: every process stops, without a traceback.
            assert server.stop(signal.SIGINT) == 0, server.output()
            assert "Traceback" not in server.stderr(), server.output()
            assert not [pid for pid in workers if _alive(pid)], "no HTTP worker is left"


def test_by_default_one_process_per_core_serves_on_either_database(
    fresh_target: Target, tmp_path: Path
) -> None:
    expected = os.cpu_count() or 1
    with ServeProcess(fresh_target, log_dir=tmp_path / "logs") as server:
        if expected > 1:
            _wait(
                lambda: f"{expected} HTTP worker processes serving" in server.stderr(),
                lambda: f"one process per core:\n{server.output()}",
            )
        assert len(_children(server.proc.pid)) == (expected if expected > 1 else 0)
        assert server.stop() == 0, server.output()


def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(
    fresh_target: Target, tmp_path: Path
) -> None:
    with ServeProcess(_serving(fresh_target), log_dir=tmp_path / "logs") as server:
        key = server.printed_key()
        assert key is not None, server.output()
        first = _workers_of(server)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _wait(
            lambda: (
                len(_children(server.proc.pid) - first) == 1
                and len(_children(server.proc.pid)) == PROCESSES
            ),
            lambda: f"a new HTTP worker replaces the killed one:\n{server.output()}",
        )
        assert not _alive(victim)
        assert "was killed by SIGKILL; started HTTP worker" in server.stderr(), server.output()
        _many_gets(server, key, "/sessions")
        workers = _children(server.proc.pid)

        server.terminate_cleanly()
        assert server.proc.returncode == 0, server.output()
        assert not [pid for pid in workers if _alive(pid)], "no HTTP worker is left"


def test_killing_the_parent_leaves_no_worker_behind(fresh_target: Target, tmp_path: Path) -> None:
    target = _serving(fresh_target)
    with ServeProcess(target, log_dir=tmp_path / "logs") as server:
        workers = _workers_of(server)
        server.kill()
        # Killed with it, not left draining on the port: a restart binds it at once.
        with ServeProcess(target, log_dir=tmp_path / "logs", port=server.port) as again:
            assert not [pid for pid in workers if _alive(pid)], "the old workers are gone"
            new_workers = _workers_of(again)
            assert not new_workers & workers
            for _ in range(20):  # every answer comes from the new server
                assert httpx.get(f"{again.url}/healthz", timeout=10).status_code == 200
        assert "Traceback" not in server.stderr(), server.output()


def test_a_negative_number_of_http_workers_is_refused(fresh_target: Target) -> None:
    result = run_openjules(fresh_target, "serve", "--http-workers", "-1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Invalid value for '--http-workers'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not fresh_target.data_dir.exists(), "nothing was started"
