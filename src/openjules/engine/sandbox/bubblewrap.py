"""Run agent commands in a bubblewrap sandbox.

What a command gets: the system directories read-only, the session's work tree at
``/workspace`` read-write (its size watched, ``disk.py``), a private size-limited ``/tmp``,
its own PID, IPC, UTS, cgroup and network namespaces (only ``lo``, unless the source allows
network: then slirp4netns connects it to the outside but never to the host's own
addresses, ``network.py``), on a root server a uid of its session's own (``uids.py``), no
capabilities, no user namespaces, a seccomp filter refusing what a build never needs
(``seccomp.py``), a new session (no terminal injection), a minimal environment with none
of the server's secrets, and limits on CPU time, address space, processes, file size and
open files. bubblewrap
reads its options from a file descriptor, so ``/proc/1/cmdline`` inside names none of
the host's paths. A wall-clock timeout kills the whole process tree: bubblewrap's PID
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

from openjules._cancellation import within
from openjules.engine.sandbox import seccomp
from openjules.engine.sandbox.disk import DiskBudget
from openjules.engine.sandbox.network import (
    NOT_STARTED_EXIT_CODE,
    SLIRP_MISSING,
    START_TIMEOUT_S,
    StartGate,
    Uplink,
    UplinkFailed,
    describe_network,
    read_until_eof,
    resolv_conf_mount,
    sandbox_resolv_conf,
    slirp4netns,
    wall_off_host,
)
from openjules.engine.sandbox.process import (
    BASE_ENV,
    CommandResult,
    Limits,
    ProcessSandbox,
    RunAs,
    SandboxStatus,
    SandboxUnavailable,
    close_fd,
    kill_group,
    prlimit_argv,
    require_prlimit,
    spawn,
    supervise,
    tool,
)
from openjules.engine.sandbox.uids import describe_users, session_user
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
        if network and slirp4netns() is None:
            return CommandResult(exit_code=NOT_STARTED_EXIT_CODE, output=f"[{SLIRP_MISSING}]")
        budget = None if read_only else await self.disk_budget(workspace, limits)
        user = self.user
        # With network, the command waits until its network is up.
        gate = StartGate() if network else None
        started = time.monotonic()
        process, info_read = await self._spawn(
            command,
            workspace=workspace,
            network=network,
            read_only=read_only,
            ro_binds=ro_binds,
            env=env or {},
            limits=limits,
            budget=budget,
            user=user,
            gate=gate,
        )
        init, uplink, failure = await _network_up(
            process.pid, info_read=info_read, gate=gate, privileged=user is not None
        )

        async def namespace_gone() -> None:
            # bubblewrap exits as soon as the command does, while the kernel is still
            # killing what the command left in the namespace: wait for that, so no
            # process of the command outlives run().
            try:
                await _until_gone(init if network else _namespace_init(info_read))
            finally:
                close_fd(info_read)
                if uplink is not None:
                    await uplink.stop()

        result = await supervise(
            process, limits=limits, started=started, after_exit=namespace_gone, budget=budget
        )
        if failure:
            return replace(
                result,
                exit_code=NOT_STARTED_EXIT_CODE,
                output=f"[the sandbox's network could not be set up: {failure}]",
            )
        return result

    async def _spawn(
        self,
        command: str,
        *,
        workspace: Path,
        network: bool,
        read_only: bool,
        ro_binds: Sequence[tuple[Path, str]],
        env: Mapping[str, str],
        limits: Limits,
        budget: DiskBudget | None,
        user: RunAs | None,
        gate: StartGate | None,
    ) -> tuple[asyncio.subprocess.Process, int]:
        """Start bubblewrap; returns it and the read end of its info fd, on which it reports
        its PID namespace's init (JSON "child-pid")."""
        info_read, info_write = os.pipe()
        files = _Files()
        try:
            options = self._bwrap_options(
                workspace,
                network=network,
                read_only=read_only,
                ro_binds=ro_binds,
                env=env,
                info_fd=info_write,
                tmp_bytes=limits.tmp_bytes,
                files=files,
            )
            # Read from a descriptor, the options (host paths among them) stay out of
            # bubblewrap's command line, which the sandbox sees as /proc/1/cmdline.
            args_fd = files.holding(b"".join(option.encode() + b"\0" for option in options))
            wrap = [tool("bwrap"), "--args", str(args_fd), "--"]
            argv = [*prlimit_argv(limits, budget), *wrap, *_drop_privileges(user)]
            # bubblewrap builds the command's environment itself (--clearenv, --setenv).
            shell = gate.argv(command) if gate else ["/bin/bash", "-c", command]
            process = await spawn(
                [*argv, *shell],
                env={},
                pass_fds=(info_write, *(gate.inner_fds if gate else ()), *files.fds),
            )
        except BaseException:
            close_fd(info_read)
            if gate:
                gate.close()
            raise
        finally:
            close_fd(info_write)
            if gate:
                gate.close_inner()
            files.close()
        return process, info_read

    def _bwrap_options(
        self,
        workspace: Path,
        *,
        network: bool,
        read_only: bool,
        ro_binds: Sequence[tuple[Path, str]],
        env: Mapping[str, str],
        info_fd: int,
        tmp_bytes: int,
        files: _Files,
    ) -> list[str]:
        privileged = self.user is not None
        # The host's resolver may be on its loopback, which a sandbox cannot reach.
        resolv_conf = sandbox_resolv_conf() if network else None
        return [
            "--info-fd",
            str(info_fd),
            "--seccomp",
            str(files.holding(seccomp.program())),
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            "--clearenv",
            *_namespace_args(privileged=privileged),
            *_system_mounts(tmp_bytes=tmp_bytes),
            *(resolv_conf_mount(files.holding(resolv_conf)) if resolv_conf else []),
            *_account_mounts(self.accounts),
            *_workspace_mounts(workspace, read_only=read_only, ro_binds=ro_binds),
            *_env_args(env),
        ]

    @classmethod
    async def describe(cls, settings: Settings) -> SandboxStatus:
        """Run ``true`` in a sandbox built from ``settings``: only a command that ran proves
        that namespaces, mounts and the privilege drop all work on this machine."""
        cls.check_available()  # SandboxUnavailable is reported by describe_sandbox
        version = await _version(tool("bwrap"))
        async with session_user(settings, wait_seconds=CHECK_WALL_SECONDS) as user:
            sandbox = cls.from_settings(settings).with_user(user)
            result = await _check(sandbox)
        if result.exit_code != 0:
            return SandboxStatus(ok=False, line=_failure_line(version, result))
        return SandboxStatus(
            ok=True,
            line=f"sandbox: {version}, checked by running a command"
            + describe_users(settings, sandbox.user)
            + describe_network(),
        )


async def _check(sandbox: BubblewrapSandbox) -> CommandResult:
    """Run ``true`` in a throwaway work tree."""
    with tempfile.TemporaryDirectory(prefix="openjules-sandbox-check-") as directory:
        tree = Path(directory)
        # Like a real work tree: mkdtemp's 0700 would keep bubblewrap, which keeps no
        # CAP_DAC_OVERRIDE, from entering it once it belongs to the sandbox uid.
        os.chmod(tree, 0o755)
        sandbox.prepare_workspace(tree)
        return await sandbox.run(
            "true", workspace=tree, limits=replace(sandbox.limits, wall_seconds=CHECK_WALL_SECONDS)
        )


async def _network_up(
    pid: int, *, info_read: int, gate: StartGate | None, privileged: bool
) -> tuple[int | None, Uplink | None, str]:
    """Connect the sandbox (bubblewrap ``pid``) to its uplink, then let its command start:
    its namespace's init, the uplink, and why it failed ("" if it did not). On failure
    the command is killed before the gate closes, so it never runs. Without a gate (no
    network) there is nothing to do."""
    if gate is None:
        return None, None, ""
    try:
        init, uplink = await _connect(info_read, gate, privileged=privileged)
        gate.open()
        return init, uplink, ""
    except UplinkFailed as exc:
        kill_group(pid)
        return None, None, str(exc)
    except BaseException:
        kill_group(pid)
        close_fd(info_read)
        raise
    finally:
        gate.close()


def _namespace_args(*, privileged: bool) -> list[str]:
    """Every sandbox has a network namespace of its own, connected or not (``network.py``).
    No command may make a user namespace: one would hand it a root of its own (mounts, and
    the kernel surface they expose). Unprivileged, bubblewrap's user namespace forbids
    more; as root bubblewrap makes none, and the seccomp filter refuses them."""
    if not privileged:
        return ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    # As root, bubblewrap makes no user namespace: it unshares the others one by one and
    # keeps only what setpriv needs to switch to the sandbox uid.
    return [
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
    ]


def _system_mounts(*, tmp_bytes: int) -> list[str]:
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
    # A size-limited /tmp: what is written there is memory that no other limit counts.
    tmp = ["--perms", "01777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    return [*args, "--proc", "/proc", "--dev", "/dev", *tmp]


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


def _account_mounts(accounts: Path | None) -> list[str]:
    """The session uid's account over the host's /etc/passwd and /etc/group."""
    if accounts is None:
        return []
    return [
        "--ro-bind",
        str(accounts / "passwd"),
        "/etc/passwd",
        "--ro-bind",
        str(accounts / "group"),
        "/etc/group",
    ]


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


class _Files:
    """Data bubblewrap reads from descriptors (its options, the seccomp filter, a file to
    mount): each in a memfd, closed on our side once bubblewrap has started."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def holding(self, data: bytes) -> int:
        fd = os.memfd_create("openjules-sandbox", os.MFD_CLOEXEC)
        self.fds.append(fd)
        with os.fdopen(os.dup(fd), "wb") as out:
            out.write(data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            close_fd(fd)
        self.fds.clear()


async def _connect(
    info_fd: int, gate: StartGate, *, privileged: bool
) -> tuple[int | None, Uplink | None]:
    """The sandbox's init and its running network, once bubblewrap has set the sandbox up
    and the command's shell waits at ``gate``; no network when bubblewrap failed (its
    output says why)."""
    try:
        data = await within(read_until_eof(info_fd), seconds=START_TIMEOUT_S)
    except TimeoutError:
        raise UplinkFailed(f"bubblewrap made no namespace within {START_TIMEOUT_S:g}s") from None
    init = _parse_info(data)
    if init is None or not await gate.started():
        return init, None
    uplink = await Uplink.start(netns_pid=init, privileged=privileged)
    if privileged:
        try:
            await wall_off_host(netns_pid=init)
        except BaseException:
            await uplink.stop()
            raise
    return init, uplink


def _namespace_init(info_fd: int) -> int | None:
    """The host pid of the sandbox's PID-namespace init, from bubblewrap's info fd (which it
    has written and closed by now: bubblewrap has exited)."""
    os.set_blocking(info_fd, False)
    try:
        data = os.read(info_fd, 65536)
    except OSError:
        return None
    return _parse_info(data)


def _parse_info(data: bytes) -> int | None:
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
        out, _ = await within(process.communicate(), seconds=CHECK_WALL_SECONDS)
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
