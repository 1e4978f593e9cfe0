"""Run the real ``openjules`` command as a subprocess, against a chosen database.

Every subprocess gets a private HOME (so nothing touches ~/.openjules), no inherited
``OPENJULES_*`` variables, and a timeout; servers are always killed on the way out.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import httpx

from tests.support import api_client, unused_port

CLI_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 15.0
KEY_LINE = re.compile(r"^ojk_[A-Za-z0-9_-]+$")


def openjules_executable() -> str:
    beside = Path(sys.executable).parent / "openjules"
    if beside.exists():
        return str(beside)
    found = shutil.which("openjules")
    assert found, "the openjules command is not installed (pip install -e .)"
    return found


@dataclass(frozen=True)
class Target:
    """Where the command keeps its data: a data dir (SQLite) or a PostgreSQL URL.

    ``via_env`` passes the location as OPENJULES_DATA_DIR / OPENJULES_DATABASE_URL instead
    of the --data-dir / --database-url flags; ``named=False`` passes neither, so the command
    uses its default under HOME (``data_dir`` should then be ``HOME/.openjules``).
    """

    backend: str
    home: Path
    data_dir: Path
    database_url: str | None = None
    via_env: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    named: bool = True

    @property
    def sqlite_file(self) -> Path:
        return self.data_dir / "openjules.db"

    def args(self) -> list[str]:
        if self.via_env or not self.named:
            return []
        if self.database_url:
            return ["--database-url", self.database_url]
        return ["--data-dir", str(self.data_dir)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}
        env["HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        # These tests check the API and the CLI; no agent runs sessions (that is in engine/).
        env["OPENJULES_MAX_CONCURRENT_SESSIONS"] = "0"
        if self.via_env and self.named:
            if self.database_url:
                env["OPENJULES_DATABASE_URL"] = self.database_url
            else:
                env["OPENJULES_DATA_DIR"] = str(self.data_dir)
        env.update(self.extra_env)
        return env

    def with_env(self, **extra: str) -> Target:
        return replace(self, extra_env={**self.extra_env, **extra})


def run_openjules(
    target: Target, *args: str, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """``openjules <group> <command> ARGS... <database flags>``; never raises on failure."""
    return subprocess.run(
        [openjules_executable(), *args, *target.args()],
        env=target.env(),
        cwd=target.home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def run_with_defaults(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``openjules ARGS`` as a user who set no data directory or database: only ``HOME``,
    so the command uses its default (``HOME/.openjules``)."""
    target = Target(backend="sqlite", home=home, data_dir=home / ".openjules", named=False)
    return run_openjules(target, *args)


def run_many(
    target: Target, *commands: list[str], timeout: float = CLI_TIMEOUT_S
) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once (each is a separate process); results in order."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = [pool.submit(run_openjules, target, *c, timeout=timeout) for c in commands]
        return [f.result() for f in futures]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that must succeed (its output is in the assertion message)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def create_key(target: Target, user: str) -> str:
    """``openjules keys create --user USER``: the key, alone on the last line of stdout."""
    lines = ok(run_openjules(target, "keys", "create", "--user", user)).splitlines()
    assert lines, "keys create printed nothing"
    key = lines[-1]
    assert KEY_LINE.match(key), f"last line is not a bare key: {key!r}"
    return key


def free_port() -> int:
    """A port for ``openjules serve --port`` (``tests.support.unused_port``)."""
    return unused_port()


class ServeProcess:
    """``openjules serve`` as a real process on a free port; stopped (or killed) on exit."""

    def __init__(self, target: Target, *, log_dir: Path, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/v1alpha"
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.monotonic_ns()
        self.stdout_path = log_dir / f"serve-{self.port}-{stamp}.out"
        self.stderr_path = log_dir / f"serve-{self.port}-{stamp}.err"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "server not started"
        return self._proc

    def start(self) -> ServeProcess:
        command = [
            openjules_executable(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.target.args(),
        ]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                command,
                env=self.target.env(),
                cwd=self.target.home,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"openjules serve exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"openjules serve did not answer /healthz:\n{self.output()}")
            time.sleep(0.05)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        return f"--- stdout\n{self.stdout()}--- stderr\n{self.stderr()}"

    def printed_key(self) -> str | None:
        """The first-start API key: a line of stdout that is a bare key, if any."""
        keys = [line for line in self.stdout().splitlines() if KEY_LINE.match(line)]
        assert len(keys) <= 1, self.output()
        return keys[0] if keys else None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and wait; returns the exit code. Kills it if it does not exit."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"openjules serve ignored {sig.name}:\n{self.output()}"
                ) from None
        return proc.returncode

    def terminate_cleanly(self) -> None:
        """SIGTERM (what service managers send): a graceful shutdown without errors.

        uvicorn re-raises the signal after shutting down, so -SIGTERM is a clean exit too.
        """
        code = self.stop(signal.SIGTERM)
        assert code in (0, -signal.SIGTERM), f"exit {code}\n{self.output()}"
        assert "Traceback" not in self.stderr(), self.output()
        assert "shutdown complete" in self.stderr().lower(), self.output()

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)

    def client(self, key: str) -> httpx.Client:
        return api_client(self.api, key)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints: exit 1, no traceback, nothing on stdout."""
    output = f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert result.returncode == 1, output
    assert "Traceback" not in result.stderr, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    assert result.stdout == "", output
    return lines[0]
