"""Run agent commands in a bubblewrap sandbox.

What a command gets: the system directories read-only, the session's work tree at
``/workspace`` read-write, a private ``/tmp``, its own PID, IPC, UTS, cgroup and network
namespaces (only ``lo``; the host's loopback is unreachable unless the source allows
network), no capabilities, a new session (no terminal injection), a minimal environment
with none of the server's secrets, and limits on CPU time, address space, processes, file
size and open files. A wall-clock timeout kills the whole process tree: bubblewrap's PID
namespace dies with it, taking every background child along.

``RLIMIT_NPROC`` is never enforced for uid 0, so when the server runs as root, commands run
as an unprivileged uid (``sandbox_uid``) and the work tree is handed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from openjules.settings import Settings

WORKSPACE_MOUNT = "/workspace"
SYSTEM_DIRS = ("/usr", "/etc", "/opt")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "PYTHONDONTWRITEBYTECODE": "1",
}


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot run here; the message says what to install or set."""


class SandboxKind(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    # Development only: no isolation beyond rlimits and a clean environment.
    UNSANDBOXED = "unsandboxed"


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600.0
    cpu_seconds: int = 600
    memory_bytes: int = 4 * 1024**3
    processes: int = 256
    file_bytes: int = 1024**3
    open_files: int = 1024
    output_bytes: int = 64 * 1024


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    output: str
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class Sandbox:
    kind: SandboxKind
    limits: Limits = Limits()
    # Used only when the server runs as root; None keeps the caller's uid.
    uid: int | None = None
    gid: int | None = None

    async def run(
        self,
        command: str,
        *,
        workspace: Path,
        network: bool = False,
        read_only: bool = False,
        ro_binds: Sequence[tuple[Path, str]] = (),
        env: dict[str, str] | None = None,
        limits: Limits | None = None,
    ) -> CommandResult:
        """Run ``command`` with bash in the sandbox; ``read_only`` mounts the tree read-only
        (the planning phase looks, it does not touch)."""
        limits = limits or self.limits
        extra_env = env or {}
        # bubblewrap reports its PID namespace's init here (JSON "child-pid").
        info_read, info_write = os.pipe() if self.kind is SandboxKind.BUBBLEWRAP else (-1, -1)
        wrap = self._wrap(
            workspace,
            network=network,
            read_only=read_only,
            ro_binds=ro_binds,
            env=extra_env,
            info_fd=info_write,
        )
        argv = [*self._prlimit(limits), *wrap, *self._drop_privileges(), "/bin/bash", "-c", command]
        started = time.monotonic()
        try:
            process = await self._spawn(
                argv, workspace=workspace, env=extra_env, keep_fd=info_write
            )
        except BaseException:
            _close(info_read)
            raise
        finally:
            _close(info_write)
        assert process.stdout is not None
        collector = _Output(limit=limits.output_bytes)
        reader = asyncio.create_task(collector.drain(process.stdout))
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), timeout=limits.wall_seconds)
        except TimeoutError:
            timed_out = True
        finally:
            _kill_group(process.pid)
            await process.wait()
            # bubblewrap exits as soon as the command does, while the kernel is still
            # killing what the command left in the namespace: wait for that, so no
            # process of the command outlives run().
            await _until_gone(_namespace_init(info_read))
            _close(info_read)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader, timeout=5)
        output = collector.text()
        if timed_out:
            output += f"\n[command timed out after {limits.wall_seconds:g}s and was killed]"
        return CommandResult(
            exit_code=process.returncode if process.returncode is not None else -1,
            output=output,
            timed_out=timed_out,
            truncated=collector.truncated,
            seconds=time.monotonic() - started,
        )

    async def _spawn(
        self, argv: list[str], *, workspace: Path, env: dict[str, str], keep_fd: int
    ) -> asyncio.subprocess.Process:
        sandboxed = self.kind is SandboxKind.BUBBLEWRAP
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # bubblewrap builds the command's environment itself (--clearenv, --setenv).
            env={} if sandboxed else {**BASE_ENV, **env},
            cwd=None if sandboxed else workspace,
            start_new_session=True,
            pass_fds=(keep_fd,) if keep_fd >= 0 else (),
            # Unsandboxed commands of a root server drop to the sandbox uid directly.
            user=None if sandboxed else self._run_as_uid(),
            group=None if sandboxed else self._run_as_gid(),
            extra_groups=None if sandboxed or self._run_as_uid() is None else [],
        )

    def prepare_workspace(self, tree: Path) -> None:
        """Give the sandbox uid ownership of the work tree (root servers only)."""
        uid, gid = self._run_as_uid(), self._run_as_gid()
        if uid is None:
            return
        for root, dirs, files in os.walk(tree):
            os.chown(root, uid, gid if gid is not None else -1)
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, gid if gid is not None else -1)

    def _run_as_uid(self) -> int | None:
        return self.uid if os.geteuid() == 0 and self.uid is not None else None

    def _run_as_gid(self) -> int | None:
        return self.gid if os.geteuid() == 0 and self.uid is not None else None

    def _prlimit(self, limits: Limits) -> list[str]:
        return [
            _tool("prlimit"),
            f"--cpu={limits.cpu_seconds}",
            f"--as={limits.memory_bytes}",
            f"--nproc={limits.processes}",
            f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}",
            "--core=0",
            "--",
        ]

    def _drop_privileges(self) -> list[str]:
        """As root, bubblewrap runs privileged (it can reach any path) and keeps only
        CAP_SETUID/CAP_SETGID; setpriv then switches to the sandbox uid, which clears every
        capability, before the command starts."""
        uid, gid = self._run_as_uid(), self._run_as_gid()
        if uid is None or self.kind is SandboxKind.UNSANDBOXED:
            return []
        return [
            _tool("setpriv"),
            f"--reuid={uid}",
            f"--regid={gid if gid is not None else uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]

    def _wrap(
        self,
        workspace: Path,
        *,
        network: bool,
        read_only: bool,
        ro_binds: Sequence[tuple[Path, str]],
        env: dict[str, str],
        info_fd: int,
    ) -> list[str]:
        if self.kind is SandboxKind.UNSANDBOXED:
            return []
        args = [
            _tool("bwrap"),
            "--info-fd",
            str(info_fd),
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            "--clearenv",
        ]
        if self._run_as_uid() is not None:
            args += [
                "--unshare-ipc",
                "--unshare-pid",
                "--unshare-uts",
                "--unshare-cgroup-try",
                "--cap-drop",
                "ALL",
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
            ]
            if not network:
                args.append("--unshare-net")
        else:
            args += ["--unshare-all", "--cap-drop", "ALL"]
            if network:
                args.append("--share-net")
        for directory in SYSTEM_DIRS:
            if Path(directory).is_dir():
                args += ["--ro-bind", directory, directory]
        for link in MERGED_USR_LINKS:
            path = Path(link)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), link]
            elif path.is_dir():
                args += ["--ro-bind", link, link]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "01777",
            "--tmpfs",
            "/tmp",
            "--ro-bind" if read_only else "--bind",
            str(workspace),
            WORKSPACE_MOUNT,
            "--chdir",
            WORKSPACE_MOUNT,
        ]
        for source, destination in ro_binds:
            # bubblewrap would create the parent 0700 (root's): the sandbox uid could not
            # traverse it.
            parent = os.path.dirname(destination)
            args += ["--perms", "0755", "--dir", parent, "--ro-bind", str(source), destination]
        for key, value in {**BASE_ENV, **env}.items():
            args += ["--setenv", key, value]
        return [*args, "--"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxUnavailable(f"`{name}` is not installed on this machine.")
    return path


NAMESPACE_EXIT_TIMEOUT_S = 5.0
NAMESPACE_POLL_S = 0.002


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _namespace_init(info_fd: int) -> int | None:
    """The host pid of the sandbox's PID-namespace init, from bubblewrap's info fd (which it
    has written and closed by now: bubblewrap has exited)."""
    if info_fd < 0:
        return None
    os.set_blocking(info_fd, False)
    try:
        data = os.read(info_fd, 65536)
    except OSError:
        return None
    try:
        pid = json.loads(data or b"{}").get("child-pid")
    except ValueError:
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


async def _until_gone(pid: int | None) -> None:
    """Wait until ``pid`` has exited. For a PID namespace's init that means every process
    of the namespace has exited too: the kernel kills and reaps them before init's exit
    completes (a zombie init is done)."""
    if pid is None:
        return
    # Polled: there is no waiting on a process that is not our child (bubblewrap's was).
    for _ in range(int(NAMESPACE_EXIT_TIMEOUT_S / NAMESPACE_POLL_S)):
        if _exited(pid):
            return
        await asyncio.sleep(NAMESPACE_POLL_S)


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (a procfs read: never blocks on a disk)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat[stat.rfind(")") + 2 :][:1] in ("Z", "X")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Output:
    """Keeps the first and last ``limit / 2`` bytes of a stream, with a marker between."""

    def __init__(self, *, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                if len(self.tail) > self.half:
                    excess = len(self.tail) - self.half
                    self.dropped += excess
                    del self.tail[:excess]

    def text(self) -> str:
        middle = f"\n[... {self.dropped} bytes of output omitted ...]\n" if self.dropped else ""
        return self.head.decode(errors="replace") + middle + self.tail.decode(errors="replace")


def check_available(kind: SandboxKind) -> None:
    """Raise ``SandboxUnavailable`` with a fix when the sandbox cannot run on this machine."""
    if shutil.which("prlimit") is None:
        raise SandboxUnavailable("`prlimit` (util-linux) is required to limit agent commands.")
    if kind is SandboxKind.BUBBLEWRAP and shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap is not installed, so agent commands cannot be sandboxed. Install it "
            "(`apt-get install bubblewrap`, `dnf install bubblewrap`), or for development "
            "only set OPENJULES_SANDBOX=unsandboxed."
        )


def sandbox_from_settings(settings: Settings) -> Sandbox:
    """The configured sandbox; ``SandboxUnavailable`` says how to fix a missing piece."""
    try:
        kind = SandboxKind(settings.sandbox)
    except ValueError:
        choices = ", ".join(k.value for k in SandboxKind)
        raise SandboxUnavailable(
            f"OPENJULES_SANDBOX={settings.sandbox!r} is not a sandbox; use one of {choices}."
        ) from None
    check_available(kind)
    return Sandbox(
        kind=kind,
        uid=settings.sandbox_uid,
        gid=settings.sandbox_gid,
        limits=Limits(
            wall_seconds=settings.command_timeout_seconds,
            cpu_seconds=settings.command_cpu_seconds,
            memory_bytes=settings.command_memory_bytes,
            processes=settings.command_max_processes,
            file_bytes=settings.command_max_file_bytes,
            output_bytes=settings.command_output_bytes,
        ),
    )
