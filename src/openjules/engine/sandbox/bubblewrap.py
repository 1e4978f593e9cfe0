"""Run agent commands in a bubblewrap sandbox.

What a command gets: the system directories read-only, the session's work tree at
``/workspace`` read-write, a private ``/tmp``, its own PID, IPC, UTS, cgroup and network
namespaces (only ``lo``; the host's loopback is unreachable unless the source allows
network), no capabilities, a new session (no terminal injection), a minimal environment
with none of the server's secrets, and limits on CPU time, address space, processes, file
size and open files. A wall-clock timeout kills the whole process tree: bubblewrap's PID
namespace dies with it, taking every background child along.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from openjules.engine.sandbox.process import (
    BASE_ENV,
    CommandResult,
    Limits,
    ProcessSandbox,
    RunAs,
    SandboxStatus,
    SandboxUnavailable,
    close_fd,
    prlimit_argv,
    require_prlimit,
    run_as,
    spawn,
    supervise,
    tool,
)
from openjules.settings import SandboxKind, Settings

WORKSPACE_MOUNT = "/workspace"
SYSTEM_DIRS = ("/usr", "/etc", "/opt")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
BWRAP_MISSING = (
    "bubblewrap is not installed, so agent commands cannot be sandboxed. Install it "
    "(`apt-get install bubblewrap`, `dnf install bubblewrap`), or for development "
    "only set OPENJULES_SANDBOX=unsandboxed."
)
NAMESPACE_EXIT_TIMEOUT_S = 5.0
NAMESPACE_POLL_S = 0.002
# The start-up check runs `true`: anything slower than this is a broken sandbox, and the
# server must not hang before it prints its first line.
CHECK_WALL_SECONDS = 3.0


@dataclass(frozen=True)
class BubblewrapSandbox(ProcessSandbox):
    @property
    def kind(self) -> SandboxKind:
        return SandboxKind.BUBBLEWRAP

    @staticmethod
    def check_available() -> None:
        require_prlimit()
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(BWRAP_MISSING)

    async def run(
        self,
        command: str,
        *,
        workspace: Path,
        network: bool = False,
        read_only: bool = False,
        ro_binds: Sequence[tuple[Path, str]] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> CommandResult:
        """Run ``command`` with bash in the sandbox; ``read_only`` mounts the tree read-only
        (the planning phase looks, it does not touch)."""
        limits = limits or self.limits
        user = run_as(self.uid, self.gid)
        # bubblewrap reports its PID namespace's init here (JSON "child-pid").
        info_read, info_write = os.pipe()
        started = time.monotonic()
        try:
            wrap = self._bwrap_argv(
                workspace,
                network=network,
                read_only=read_only,
                ro_binds=ro_binds,
                env=env or {},
                info_fd=info_write,
            )
            argv = [*prlimit_argv(limits), *wrap, *_drop_privileges(user)]
            # bubblewrap builds the command's environment itself (--clearenv, --setenv).
            process = await spawn(
                [*argv, "/bin/bash", "-c", command], env={}, pass_fds=(info_write,)
            )
        except BaseException:
            close_fd(info_read)
            raise
        finally:
            close_fd(info_write)

        async def namespace_gone() -> None:
            # bubblewrap exits as soon as the command does, while the kernel is still
            # killing what the command left in the namespace: wait for that, so no
            # process of the command outlives run().
            try:
                await _until_gone(_namespace_init(info_read))
            finally:
                close_fd(info_read)

        return await supervise(process, limits=limits, started=started, after_exit=namespace_gone)

    def _bwrap_argv(
        self,
        workspace: Path,
        *,
        network: bool,
        read_only: bool,
        ro_binds: Sequence[tuple[Path, str]],
        env: Mapping[str, str],
        info_fd: int,
    ) -> list[str]:
        privileged = run_as(self.uid, self.gid) is not None
        return [
            tool("bwrap"),
            "--info-fd",
            str(info_fd),
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            "--clearenv",
            *_namespace_args(privileged=privileged, network=network),
            *_system_mounts(),
            *_workspace_mounts(workspace, read_only=read_only, ro_binds=ro_binds),
            *_env_args(env),
            "--",
        ]

    @classmethod
    async def describe(cls, settings: Settings) -> SandboxStatus:
        """Run ``true`` in a sandbox built from ``settings``: only a command that ran proves
        that namespaces, mounts and the privilege drop all work on this machine."""
        cls.check_available()  # SandboxUnavailable is reported by describe_sandbox
        version = await _version(tool("bwrap"))
        sandbox = cls.from_settings(settings)
        with tempfile.TemporaryDirectory(prefix="openjules-sandbox-check-") as directory:
            tree = Path(directory)
            # Like a real work tree: mkdtemp's 0700 would keep bubblewrap, which keeps no
            # CAP_DAC_OVERRIDE, from entering it once it belongs to the sandbox uid.
            os.chmod(tree, 0o755)
            sandbox.prepare_workspace(tree)
            result = await sandbox.run(
                "true",
                workspace=tree,
                limits=replace(sandbox.limits, wall_seconds=CHECK_WALL_SECONDS),
            )
        if result.exit_code != 0:
            return SandboxStatus(ok=False, line=_failure_line(version, result))
        user = run_as(sandbox.uid, sandbox.gid)
        as_uid = f" (commands run as uid {user.uid})" if user else ""
        return SandboxStatus(
            ok=True, line=f"sandbox: {version}, checked by running a command{as_uid}"
        )


def _namespace_args(*, privileged: bool, network: bool) -> list[str]:
    if not privileged:
        return ["--unshare-all", "--cap-drop", "ALL", *(["--share-net"] if network else [])]
    # As root, bubblewrap makes no user namespace: it unshares the others one by one and
    # keeps only what setpriv needs to switch to the sandbox uid.
    args = [
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
    return [*args, *([] if network else ["--unshare-net"])]


def _system_mounts() -> list[str]:
    args: list[str] = []
    for directory in SYSTEM_DIRS:
        if Path(directory).is_dir():
            args += ["--ro-bind", directory, directory]
    for link in MERGED_USR_LINKS:
        path = Path(link)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            args += ["--ro-bind", link, link]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--tmpfs", "/tmp"]


def _workspace_mounts(
    workspace: Path, *, read_only: bool, ro_binds: Sequence[tuple[Path, str]]
) -> list[str]:
    args = [
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
    return args


def _env_args(env: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in {**BASE_ENV, **env}.items():
        args += ["--setenv", key, value]
    return args


def _drop_privileges(user: RunAs | None) -> list[str]:
    """As root, bubblewrap runs privileged (it can reach any path) and keeps only
    CAP_SETUID/CAP_SETGID; setpriv then switches to the sandbox uid, which clears every
    capability, before the command starts."""
    if user is None:
        return []
    return [
        tool("setpriv"),
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def _namespace_init(info_fd: int) -> int | None:
    """The host pid of the sandbox's PID-namespace init, from bubblewrap's info fd (which it
    has written and closed by now: bubblewrap has exited)."""
    os.set_blocking(info_fd, False)
    try:
        data = os.read(info_fd, 65536)
    except OSError:
        return None
    try:
        pid = json.loads(data or b"{}").get("child-pid")
    except (ValueError, AttributeError):
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


async def _version(bwrap: str) -> str:
    """``bubblewrap 0.8.0``, as bwrap prints it; just ``bubblewrap`` if it does not say."""
    process = await asyncio.create_subprocess_exec(
        bwrap,
        "--version",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=CHECK_WALL_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        return "bubblewrap"
    words = out.decode(errors="replace").split()
    return f"bubblewrap {words[-1]}" if words else "bubblewrap"


def _failure_line(version: str, result: CommandResult) -> str:
    if result.timed_out:
        why = f"a trivial command did not finish within {CHECK_WALL_SECONDS:g}s"
    else:
        lines = [line.strip() for line in result.output.splitlines() if line.strip()]
        why = lines[0] if lines else f"exit code {result.exit_code}"
    return (
        f"sandbox: {version} is installed but cannot run commands here: {why}. Unprivileged "
        "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, or "
        "kernel.apparmor_restrict_unprivileged_userns=0; in a container, allow them); for "
        "development only, OPENJULES_SANDBOX=unsandboxed runs commands without isolation."
    )
