"""What bench/concurrency.py measures: `openjules serve` and the fake model, each started
as a subprocess of the benchmark, the fresh databases they run on, and how to tell when
the server is idle."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import _postgres
from _process import stop_process
from _procfs import TreeSample, sample
from _scripted import BenchError
from openjules.settings import Settings
from openjules.store.migrate import upgrade_to_head
from openjules.testing import register_source

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
QUIET_CPU = 0.1  # cores: below this over QUIET_WINDOW the server is idle
QUIET_WINDOW = 0.5
QUIET_TIMEOUT = 60.0
MODEL_SCRIPT = Path(__file__).with_name("_model_process.py")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    # Processes under an idle server (HTTP worker processes, if any).
    idle_processes: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.port}/v1alpha"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}


@dataclass(frozen=True)
class ModelProcess:
    pid: int
    url: str
    latency: float
    turns: Path  # its log of answers (bench/_turns.py)


@contextlib.contextmanager
def start_model(*, latency: float, log: Path) -> Iterator[ModelProcess]:
    """The fake model in its own process."""
    turns = log.with_suffix(".turns")
    with log.open("wb") as err:
        process = subprocess.Popen(
            [
                *(sys.executable, str(MODEL_SCRIPT)),
                *("--latency", str(latency), "--log", str(turns)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=_clean_env(),
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        if not url.startswith("http"):
            raise BenchError(f"the fake model did not start; see {log}:\n{log.read_text()}")
        yield ModelProcess(process.pid, url, latency, turns)
    finally:
        stop_process(process, timeout=10)


@contextlib.contextmanager
def start_server(
    *, settings: Settings, model_url: str, sandbox: str, log: Path
) -> Iterator[ServerProcess]:
    """`openjules serve` on a free port, configured only through OPENJULES_ variables;
    ready once /healthz answers."""
    port = _free_port()
    env = _clean_env()
    env.update(
        OPENJULES_DATA_DIR=str(settings.data_dir),
        OPENJULES_DATABASE_URL=settings.resolved_database_url(),
        OPENJULES_MODEL_BASE_URL=model_url,
        OPENJULES_MODEL_API_KEY="sk-bench",
        OPENJULES_MODEL="fake-model",
        OPENJULES_MODEL_TIMEOUT_SECONDS="60",
        OPENJULES_SANDBOX=sandbox,
        OPENJULES_PUBLIC_BASE_URL="http://bench.invalid",
        OPENJULES_RUNNER=settings.runner.value,
        OPENJULES_TEMPORAL_ADDRESS=settings.temporal_address,
        OPENJULES_TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
    )
    executable = Path(sys.executable).with_name("openjules")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "serve", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = ServerProcess(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise BenchError(f"the server exited; see {log}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{HOST}:{port}/healthz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"the server is not ready after {START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        server.idle_processes = sample(server.pid).processes
        yield server
    finally:
        stop_process(process, timeout=20)


def wait_quiet(server: ServerProcess) -> TreeSample:
    """Wait until the server tree has no descendants beyond an idle server's (no sandbox
    command, no git) and uses < QUIET_CPU cores; returns a sample of it then."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    last = sample(server.pid)
    while True:
        time.sleep(QUIET_WINDOW)
        now = sample(server.pid)
        if (
            now.processes <= server.idle_processes
            and (now.cpu - last.cpu) / QUIET_WINDOW < QUIET_CPU
        ):
            return now
        if time.monotonic() > deadline:
            return now  # busy for another reason (e.g. other helpers' load); go on
        last = now


def idle_reads(server: ServerProcess, *, key: str) -> str:
    """A few API reads, as a person opening the web app or a client polling would make:
    two pages of the sessions list, ten sessions, the activities of three."""
    with httpx.Client(base_url=server.api, headers={"X-Goog-Api-Key": key}, timeout=60.0) as client:
        ids: list[str] = []
        token = ""
        for _ in range(2):
            params: dict[str, Any] = {"pageSize": 100}
            if token:
                params["pageToken"] = token
            page = client.get("/sessions", params=params).json()
            ids += [s["id"] for s in page.get("sessions", [])]
            token = page.get("nextPageToken", "")
            if not token:
                break
        for sid in ids[:10]:
            client.get(f"/sessions/{sid}").raise_for_status()
        for sid in ids[:3]:
            client.get(f"/sessions/{sid}/activities").raise_for_status()
        return f"{min(len(ids), 200)} sessions listed, {min(len(ids), 10)} read, activities of 3"


SOURCE_OWNER, SOURCE_REPO = "bench", "small"
SOURCE_NAME = f"sources/github/{SOURCE_OWNER}/{SOURCE_REPO}"


class Databases:
    """Fresh databases of the chosen backend (``sqlite``, or ``postgresql`` created through
    ``postgres_admin`` and dropped when ``stack`` closes), each with the schema and the
    source (``SOURCE_NAME``)."""

    def __init__(
        self, *, backend: str, postgres_admin: str, stack: contextlib.ExitStack, tmp: Path
    ) -> None:
        self.backend, self.postgres_admin, self.stack, self.tmp = (
            backend,
            postgres_admin,
            stack,
            tmp,
        )
        self.made = 0

    def new(self, source: Path) -> str:
        self.made += 1
        if self.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.tmp / f'db{self.made}' / 'openjules.db'}"
        else:
            url = self.stack.enter_context(_postgres.postgres_database(self.postgres_admin))
        upgrade_to_head(url)
        settings = self.settings(url, self.made)
        register_source(settings, location=str(source), owner=SOURCE_OWNER, repo=SOURCE_REPO)
        return url

    def settings(self, url: str, number: int) -> Settings:
        return Settings(data_dir=self.tmp / f"data{number}", database_url=url)
