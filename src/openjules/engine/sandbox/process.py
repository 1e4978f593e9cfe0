"""What every sandbox shares: the limits and results of a command, running it under
``prlimit`` in its own process group, collecting its output, the wall-clock timeout and the
work tree's size limit (``disk.py``).

``RLIMIT_NPROC`` is never enforced for uid 0, so when the server runs as root, commands run
as an unprivileged uid, one per running session (``uids.py``), and the work tree is handed
to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

from openjules._cancellation import within
from openjules.engine.sandbox.disk import (
    MIB,
    DiskBudget,
    DiskMeter,
    Overrun,
    TreeMeasure,
    megabytes,
)
from openjules.engine.uninterrupted import to_the_end
from openjules.settings import Settings

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# After the command has been killed, its output pipe is normally at EOF at once; a
# grandchild that escaped the process group must not hold run() forever.
OUTPUT_DRAIN_TIMEOUT_S = 5.0
# How RLIMIT_FSIZE shows: bash's report of SIGXFSZ, and strerror(EFBIG).
FILE_SIZE_ERRORS = ("File size limit exceeded", "File too large")
PRLIMIT_MISSING = "`prlimit` (util-linux) is required to limit agent commands."


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot run here; the message says what to install or set."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600.0
    cpu_seconds: int = 600
    memory_bytes: int = 4 * 1024**3
    processes: int = 256
    file_bytes: int = 1024**3
    open_files: int = 1024
    output_bytes: int = 64 * 1024
    # The work tree's size on disk (all files, not one), and the private /tmp's (bubblewrap).
    workspace_bytes: int = 3072 * MIB
    tmp_bytes: int = 1024 * MIB


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    output: str
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0
    # Set when the work tree ended over its size limit (the command may have been stopped).
    workspace_over: Overrun | None = None


@dataclass(frozen=True)
class SandboxStatus:
    """The start-up self check: ``line`` is printed as is; ``ok`` is False when agent
    commands cannot run (the line then says why and what to do)."""

    ok: bool
    line: str


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    # A directory with ``passwd`` and ``group`` files naming the uid, for a uid the host has
    # no account for (``getpwuid`` fails without one: whoami, ssh, git's default author).
    accounts: Path | None = None


def limits_from_settings(settings: Settings) -> Limits:
    return Limits(
        wall_seconds=settings.command_timeout_seconds,
        cpu_seconds=settings.command_cpu_seconds,
        memory_bytes=settings.command_memory_bytes,
        processes=settings.command_max_processes,
        file_bytes=settings.command_max_file_bytes,
        output_bytes=settings.command_output_bytes,
        workspace_bytes=settings.workspace_max_mb * MIB,
        tmp_bytes=settings.sandbox_tmp_mb * MIB,
    )


def run_as(uid: int | None, gid: int | None) -> RunAs | None:
    """Whom commands run as, or None to keep the server's uid (it is not root, or no uid is
    configured). Without a gid, the group has the uid's number rather than staying root's."""
    if os.geteuid() != 0 or uid is None:
        return None
    return RunAs(uid=uid, gid=gid if gid is not None else uid)


def chown_tree(tree: Path, owner: RunAs | None) -> None:
    if owner is None:
        return
    uid, gid = owner.uid, owner.gid
    # A file the uid owns already is left alone: a chown changes its ctime, and git then
    # reads it again to tell whether it changed (a tree kept for the session's next run
    # usually gets the same uid back).
    for root, dirs, files in os.walk(tree):
        _own(root, uid, gid)
        for name in (*dirs, *files):
            _own(os.path.join(root, name), uid, gid)


def _own(path: str, uid: int, gid: int) -> None:
    st = os.lstat(path)
    if st.st_uid != uid or st.st_gid != gid:
        os.lchown(path, uid, gid)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxUnavailable(f"`{name}` is not installed on this machine.")
    return path


def require_prlimit() -> None:
    if shutil.which("prlimit") is None:
        raise SandboxUnavailable(PRLIMIT_MISSING)


def prlimit_argv(limits: Limits, budget: DiskBudget | None = None) -> list[str]:
    # A file may not outgrow the room left in the work tree; the watch stops many files.
    file_bytes = budget.file_bytes() if budget else limits.file_bytes
    return [
        tool("prlimit"),
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.processes}",
        f"--fsize={file_bytes}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
    ]


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
    user: RunAs | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` with output and errors on one pipe, no stdin, and a new session: the
    command's process group is what the timeout kills, and it has no terminal to inject
    input into."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        user=user.uid if user else None,
        group=user.gid if user else None,
        # Dropping to another uid must not keep root's supplementary groups.
        extra_groups=[] if user else None,
    )


async def supervise(
    process: asyncio.subprocess.Process,
    *,
    limits: Limits,
    started: float,
    after_exit: Callable[[], Awaitable[None]] | None = None,
    budget: DiskBudget | None = None,
) -> CommandResult:
    """Collect ``process``'s output until it exits, the wall-clock limit passes or the work
    tree outgrows ``budget``, then kill its process group; ``after_exit`` waits for whatever
    else must be gone before the command counts as finished. When the caller is cancelled
    (the session was cancelled, paused or deleted), the command is killed and all of that
    still runs to its end, however often the cancellation is repeated: no process of the
    command and no watch of its tree outlive the call."""
    assert process.stdout is not None
    collector = Output(limit=limits.output_bytes)
    reader = asyncio.create_task(collector.drain(process.stdout))
    timed_out = False
    if budget is not None:
        budget.watch(lambda: kill_group(process.pid))
    try:
        await within(process.wait(), seconds=limits.wall_seconds)
    except TimeoutError:
        timed_out = True
    finally:
        overrun = await to_the_end(
            _settle(process, reader=reader, after_exit=after_exit, budget=budget)
        )
    output = collector.text()
    if timed_out:
        output += f"\n[command timed out after {limits.wall_seconds:g}s and was killed]"
    # An overrun is the caller's to report (the shell tool, the setup script).
    if (
        overrun is None
        and budget is not None
        and budget.file_bytes() < limits.file_bytes
        and any(sign in output for sign in FILE_SIZE_ERRORS)
    ):
        # The command hit the file-size limit the room left imposed, which says only "File
        # too large": say where that limit came from.
        output += (
            f"\n[The workspace has {megabytes(budget.room_bytes())} MB left of its limit of "
            f"{megabytes(limits.workspace_bytes)} MB: no file can grow past that.]"
        )
    return CommandResult(
        exit_code=process.returncode if process.returncode is not None else -1,
        output=output,
        timed_out=timed_out,
        truncated=collector.truncated,
        seconds=time.monotonic() - started,
        workspace_over=overrun,
    )


async def _settle(
    process: asyncio.subprocess.Process,
    *,
    reader: asyncio.Task[None],
    after_exit: Callable[[], Awaitable[None]] | None,
    budget: DiskBudget | None,
) -> Overrun | None:
    """Kill the command's group and wait until nothing of it runs and its output is read;
    the verdict on the work tree's size, if it is watched."""
    kill_group(process.pid)
    await process.wait()
    if after_exit is not None:
        await after_exit()
    overrun = None
    if budget is not None:
        # Once nothing of the command runs: the verdict is on the tree it left.
        overrun = await asyncio.to_thread(budget.finish)
    with contextlib.suppress(asyncio.TimeoutError):
        await within(reader, seconds=OUTPUT_DRAIN_TIMEOUT_S)
    return overrun


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class Output:
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


@dataclass(frozen=True)
class ProcessSandbox:
    """What both sandboxes share: limits, the uid a root server's commands run as, and the
    measures of the work trees they write to."""

    limits: Limits = field(default_factory=Limits)
    # Used only when the server runs as root; None keeps the caller's uid.
    uid: int | None = None
    gid: int | None = None
    accounts: Path | None = None  # see RunAs
    # The work trees' last measures (one sandbox serves one session's run).
    meter: DiskMeter = field(default_factory=DiskMeter, compare=False, repr=False)

    async def disk_budget(self, tree: Path, limits: Limits) -> DiskBudget:
        """One command's share of ``tree``'s limit (it may walk the tree, in a thread)."""
        return await asyncio.to_thread(
            self.meter.budget, tree, limit_bytes=limits.workspace_bytes, file_cap=limits.file_bytes
        )

    def last_measure(self, tree: Path) -> TreeMeasure | None:
        """This sandbox's last measure of ``tree``, if its commands or tools took one."""
        return self.meter.last(tree)

    def workspace_used(self, tree: Path) -> int:
        """Bytes ``tree`` holds, as the limit counts them (blocking: it may walk the tree)."""
        return self._measured(tree).start.used

    def workspace_room(self, tree: Path) -> int:
        """Bytes ``tree`` may still grow by (blocking: it may walk the tree)."""
        return self._measured(tree).room_bytes()

    def _measured(self, tree: Path) -> DiskBudget:
        return self.meter.budget(tree, limit_bytes=self.limits.workspace_bytes, file_cap=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Commands run as the fixed ``sandbox_uid`` if one is set, otherwise as the server's
        own uid until ``with_user`` gives the sandbox a session's uid (``uids.py``)."""
        return cls(
            limits=limits_from_settings(settings),
            uid=settings.sandbox_uid,
            gid=settings.sandbox_gid,
        )

    @property
    def user(self) -> RunAs | None:
        """Whom commands run as; None: the server's own uid (it is not root, or no uid)."""
        user = run_as(self.uid, self.gid)
        return replace(user, accounts=self.accounts) if user else None

    def with_user(self, user: RunAs | None) -> Self:
        """This sandbox with commands running as ``user`` (None: the server's uid)."""
        if user is None:
            return replace(self, uid=None, gid=None, accounts=None)
        return replace(self, uid=user.uid, gid=user.gid, accounts=user.accounts)

    def prepare_workspace(
        self,
        tree: Path,
        *,
        owned_by: tuple[int, int] | None = None,
        measured: TreeMeasure | None = None,
    ) -> None:
        """Give the sandbox uid ownership of the work tree (root servers only); the tree
        may be one an earlier run's uid owned. For a tree kept from the last run:
        ``owned_by``, the (uid, gid) that owns every file of it already; ``measured``, that
        run's last measure of it (the first command then need not walk it)."""
        if measured is not None:
            self.meter.adopt(tree, measured)
        user = self.user
        if user is not None and owned_by == (user.uid, user.gid):
            return
        chown_tree(tree, user)
