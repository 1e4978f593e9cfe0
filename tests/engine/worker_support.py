"""A real `openjules worker` process for tests that run sessions outside the API's
process, the API server they share (fixtures ``api`` and ``user``), and a fake-model
responder that answers by turn (the same reply after a resume)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, Reply, ToolCall, provision_user
from tests.support import api_client

OPENJULES = str(Path(sys.executable).with_name("openjules"))


def turn_of(request: dict[str, Any]) -> int:
    """How many model turns the transcript already holds: the same after a resume."""
    return sum(1 for m in request["messages"] if m["role"] == "assistant")


def scripted(steps: list[Reply]) -> Any:
    """A responder that answers by turn number, so a replayed request gets the same reply."""

    def respond(request: dict[str, Any]) -> Reply:
        return steps[min(turn_of(request), len(steps) - 1)]

    return respond


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(name, arguments)])


class Worker:
    """An `openjules worker` subprocess in its own process group."""

    def __init__(
        self,
        *,
        settings: Settings,
        model: FakeModel,
        home: Path,
        concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}
        env.update(
            HOME=str(home),
            OPENJULES_DATABASE_URL=settings.resolved_database_url(),
            OPENJULES_DATA_DIR=str(home / "data"),
            OPENJULES_MODEL_BASE_URL=model.base_url,
            OPENJULES_MODEL_API_KEY="sk-fake",
            OPENJULES_MODEL="fake-model",
            OPENJULES_MODEL_MAX_RETRIES="1",
            # A killed worker's lease expires quickly so the test need not wait long.
            OPENJULES_LEASE_SECONDS="2",
            # The API's runner: under the Temporal runner, the worker polls its task queue.
            OPENJULES_RUNNER=settings.runner.value,
            OPENJULES_TEMPORAL_ADDRESS=settings.temporal_address,
            OPENJULES_TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
            OPENJULES_TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS=str(
                settings.temporal_heartbeat_timeout_seconds
            ),
        )
        env.update(extra_env or {})
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / "worker.log"
        self.process = subprocess.Popen(
            [OPENJULES, "worker", "--concurrency", str(concurrency)],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole group: the worker and the sandboxed commands it started."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def api(server_settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """The HTTP API alone (workers=0): sessions are run by `openjules worker` processes."""
    settings = server_settings.model_copy(update={"data_dir": tmp_path / "api", "workers": 0})
    with LiveServer(settings) as live:
        yield live


@pytest.fixture
def user(api: LiveServer) -> Iterator[httpx.Client]:
    key = provision_user(api.settings, name=f"w-{secrets.token_hex(4)}")
    with api_client(api.api, key) as c:
        yield c
