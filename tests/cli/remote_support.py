"""Run ``openjules login`` / ``remote …`` as a user would: the real executable in a
subprocess, with a config directory of the test's own (never the machine's), the server
and key in the environment or not, and git that reads no configuration of the machine.

Every run asserts that the API key never reaches stdout or stderr and that no traceback
does; ``error_line`` reads the one ``Error: …`` line a failed command prints.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, overload

from tests.cli.support import openjules_executable
from tests.support import git, git_env

CLI_TIMEOUT_S = 60.0
WATCH_TIMEOUT_S = 120.0
# The environment a user's shell may have that would change what the command does.
_DROPPED_ENV = ("OPENJULES_", "JULES_", "XDG_CONFIG_HOME", "GIT_")


@dataclass(frozen=True)
class Cli:
    """One user's command line: their HOME (the config dir is inside it), and the server
    URL and key as environment variables when given (else what ``login`` stored is used).
    ``secrets`` are strings that must never be printed (the key is always one)."""

    home: Path
    url: str | None = None
    key: str | None = None
    secrets: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    def with_env(self, **extra: str) -> Cli:
        return replace(self, extra_env={**self.extra_env, **extra})

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV)}
        env.update(git_env(self.home))
        env.update(
            HOME=str(self.home),
            OPENJULES_CONFIG_DIR=str(self.config_dir),
            PYTHONUNBUFFERED="1",
        )
        if self.url:
            env["OPENJULES_URL"] = self.url
        if self.key:
            env["JULES_API_KEY"] = self.key
        env.update(self.extra_env)
        return env

    def _never_printed(self) -> list[str]:
        return [s for s in (self.key, *self.secrets) if s]

    @overload
    def run(
        self,
        *args: str,
        cwd: Path | None = ...,
        input: str | None = ...,
        binary: Literal[False] = False,
        timeout: float = ...,
    ) -> subprocess.CompletedProcess[str]: ...

    @overload
    def run(
        self,
        *args: str,
        cwd: Path | None = ...,
        input: str | None = ...,
        binary: Literal[True],
        timeout: float = ...,
    ) -> subprocess.CompletedProcess[bytes]: ...

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        input: str | None = None,
        binary: bool = False,
        timeout: float = CLI_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[Any]:
        """``openjules ARGS`` (stdin: ``input``, else nothing); never raises on failure.
        With ``binary`` stdout and stderr are bytes, exactly as written."""
        self.home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [openjules_executable(), *args],
            env=self.env(),
            cwd=cwd or self.home,
            input=input.encode() if input is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        self._check_output(args, out, err)
        if binary:
            return done
        return subprocess.CompletedProcess(done.args, done.returncode, out, err)

    def _check_output(self, args: Sequence[str], out: str, err: str) -> None:
        shown = f"openjules {' '.join(args)}\n--- stdout\n{out}--- stderr\n{err}"
        assert "Traceback" not in err, shown
        for secret in self._never_printed():
            assert secret not in out, f"a secret was printed:\n{shown}"
            assert secret not in err, f"a secret was printed:\n{shown}"

    def watch(self, session_id: str, *more: str) -> Follower:
        """``openjules remote watch ID`` running in the background (stdout a pipe)."""
        return Follower(self, ["remote", "watch", session_id, *more])

    def ok(self, *args: str, cwd: Path | None = None, input: str | None = None) -> str:
        """stdout of a command that must succeed."""
        done = self.run(*args, cwd=cwd, input=input)
        assert done.returncode == 0, _shown(done)
        return done.stdout

    def json(self, *args: str, cwd: Path | None = None, input: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", cwd=cwd, input=input))


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"


def error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a refused command prints on stderr (``Error: …``), having exited with
    ``code`` and printed nothing on stdout."""
    shown = _shown(done)
    assert done.returncode == code, shown
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    assert lines[0].startswith("Error: "), shown
    assert done.stdout == "", shown
    return lines[0]


def created_ids(stdout: str) -> list[str]:
    """The ids ``remote new`` printed, one ``ID URL`` line per session."""
    ids = []
    for line in stdout.splitlines():
        sid, url = line.split(" ")
        assert url.endswith(f"/session/{sid}"), line
        ids.append(sid)
    return ids


class Follower:
    """A background command whose stdout lines are collected as they come."""

    def __init__(self, cli: Cli, args: list[str]) -> None:
        self.cli = cli
        self.args = args
        self.lines: list[str] = []
        self._lock = threading.Lock()
        cli.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [openjules_executable(), *args],
            env=cli.env(),
            cwd=cli.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self._stderr)),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._lock:
                into.append(line.rstrip("\n"))

    @property
    def stdout(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "\n".join(self._stderr)

    def wait_for(self, predicate: Callable[[str], bool], *, what: str) -> None:
        """Until a line of stdout satisfies ``predicate``."""
        deadline = time.monotonic() + WATCH_TIMEOUT_S
        while True:
            with self._lock:
                if any(predicate(line) for line in self.lines):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.finish(kill=True)
                raise AssertionError(f"watch never printed {what}:\n{self.shown()}")
            time.sleep(0.05)

    def finish(self, *, kill: bool = False) -> int:
        """Its exit code, once it has exited (killed first with ``kill``)."""
        if kill and self.process.poll() is None:
            self.process.kill()
        try:
            code = self.process.wait(timeout=WATCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"watch did not end:\n{self.shown()}") from None
        for reader in self._readers:
            reader.join()
        self.cli._check_output(self.args, self.stdout, self.stderr)
        return code

    def shown(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def clone(source: Path, dest: Path, *, origin: str | None = None) -> Path:
    """A clone of ``source`` at ``dest``; its ``origin`` set to ``origin`` when given."""
    git("clone", "-q", str(source), str(dest), cwd=source.parent)
    if origin is not None:
        git("remote", "set-url", "origin", origin, cwd=dest)
    return dest


def tree_state(path: Path) -> tuple[dict[str, bytes], str]:
    """Every file of the work tree (outside .git) with its bytes, and ``git status``."""
    files = {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(path).parts
    }
    return files, git("status", "--porcelain", cwd=path)


def run_on_a_terminal(
    cli: Cli, *args: str, answer: tuple[str, str] | None = None
) -> tuple[int, str]:
    """``openjules ARGS`` on a pseudo-terminal (stdin, stdout and stderr): its exit code
    and everything it wrote there (styles included, and whatever the terminal echoed).
    ``answer`` is (PROMPT, TEXT): TEXT is typed once PROMPT has been shown."""
    cli.home.mkdir(parents=True, exist_ok=True)
    controller, terminal = pty.openpty()
    env = {k: v for k, v in cli.env().items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="120")
    process = subprocess.Popen(
        [openjules_executable(), *args],
        env=env,
        cwd=cli.home,
        stdin=terminal if answer else subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + WATCH_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if not select.select([controller], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
            if answer is not None and answer[0].encode() in b"".join(chunks):
                os.write(controller, answer[1].encode() + b"\n")
                answer = None
        code = process.wait(timeout=5)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    output = b"".join(chunks).decode(errors="replace")
    cli._check_output(args, output, "")
    return code, output
