"""Outbound network for the sandbox of a source that allows it.

Such a sandbox still gets its own network namespace; slirp4netns connects it to the outside
through a user-mode TCP/IP stack running on the host side: the command sees ``tap0``
(10.0.2.100, gateway 10.0.2.2, DNS 10.0.2.3) and its connections leave as ordinary
sockets of slirp4netns. ``--disable-host-loopback`` refuses the gateway's mapping to the
host's 127.0.0.1, so the server's database, its API and whatever else listens on the
host's loopback stay out of reach; 127.0.0.1 inside is the sandbox's own ``lo``.

slirp4netns over pasta: it attaches to a namespace by a path and reports readiness on a
file descriptor, and it stops when another one closes, which fits a sandbox that must
wait for its network before the command starts (about 9 ms here). pasta started as root
switches to nobody before it opens the namespace, and forwards ports into it by default.
slirp4netns runs with its own sandbox (an empty mount namespace, capabilities dropped)
and seccomp filter.

``--disable-host-loopback`` covers only the host's 127.0.0.1 (and the gateway's mapping to
it): a service listening on all interfaces would still answer at the host's own LAN
address, so the sandbox's namespace also gets an unreachable route for each of the host's
addresses (root only: that needs entering the namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from openjules._cancellation import within
from openjules.engine.sandbox.process import Output, close_fd

SLIRP_MISSING = (
    "this source allows network access, but slirp4netns, which gives a sandbox its own "
    "network, is not installed on the server (`apt-get install slirp4netns`), so its "
    "commands cannot run"
)
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
# slirp4netns' built-in addresses (--configure, the default 10.0.2.0/24).
SLIRP_DNS = "10.0.2.3"
TAP_DEVICE = "tap0"
# The largest MTU slirp4netns takes less one: fewer, larger packets through the user-mode
# stack (the default 1500 costs throughput).
MTU = 65520
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
ERROR_BYTES = 2048
# A command that could not be started, as a shell reports it ("cannot execute").
NOT_STARTED_EXIT_CODE = 126
# The kernel's IPv4 routing table, which lists the host's own addresses ("/32 host LOCAL").
FIB_TRIE = Path("/proc/net/fib_trie")
TRIE_NODE = re.compile(r"[|+]-- (\d+\.\d+\.\d+\.\d+)$")
# ioctl(2) on a namespace file: the user namespace that owns it (linux/nsfs.h).
NS_GET_USERNS = 0xB701


class UplinkFailed(RuntimeError):
    """The sandbox's network could not be set up; the message says why."""


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses, loopback aside (which slirp4netns already refuses)."""
    try:
        lines = FIB_TRIE.read_text().splitlines()
    except OSError:
        return []
    found: dict[str, None] = {}
    node = ""
    for line in lines:
        match = TRIE_NODE.search(line.strip())
        if match:
            node = match.group(1)
        elif "/32 host LOCAL" in line and node and not ipaddress.ip_address(node).is_loopback:
            found[node] = None
    return list(found)


async def wall_off_host(*, netns_pid: int) -> None:
    """Make the host's own addresses unreachable from the network namespace of
    ``netns_pid`` (an unreachable route each, so a connection fails at once). Fails closed:
    a sandbox whose walls cannot be built gets no network."""
    addresses = host_addresses()
    if not addresses:
        return
    nsenter, ip = shutil.which("nsenter"), shutil.which("ip")
    if nsenter is None or ip is None:
        raise UplinkFailed("walling the host off needs nsenter (util-linux) and ip (iproute2)")
    routes = "".join(f"route add unreachable {address}/32\n" for address in addresses)
    process = await asyncio.create_subprocess_exec(
        *(nsenter, f"--net=/proc/{netns_pid}/ns/net", ip, "-batch", "-"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={},
    )
    try:
        _, errors = await within(process.communicate(routes.encode()), seconds=START_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise UplinkFailed("ip did not set the sandbox's routes in time") from None
    if process.returncode != 0:
        why = errors.decode(errors="replace").strip()[:ERROR_BYTES]
        raise UplinkFailed(f"the sandbox's routes could not be set: {why}")


def slirp4netns() -> str | None:
    return shutil.which("slirp4netns")


def describe_network() -> str:
    """For the start-up line: nothing when sources that allow network can have it."""
    if slirp4netns() is not None:
        return ""
    return (
        "; slirp4netns is not installed: commands of sources that allow network access "
        "will fail (`apt-get install slirp4netns`)"
    )


def sandbox_resolv_conf(host: Path = HOST_RESOLV_CONF) -> bytes | None:
    """What the sandbox's resolv.conf must say instead of the host's, or None to keep it.

    A resolver on the host's loopback (systemd-resolved's 127.0.0.53, a local dnsmasq) is
    unreachable from the sandbox, whose loopback is its own: such nameservers become
    slirp4netns' DNS forwarder, which asks the host's resolver on the sandbox's behalf."""
    try:
        text = host.read_text(errors="replace")
    except OSError:
        text = ""
    lines: list[str] = []
    changed = False
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and _loopback(words[1]):
            changed = True
            line = f"nameserver {SLIRP_DNS}"
            if line in lines:
                continue
        lines.append(line)
    if not any(line.split()[:1] == ["nameserver"] for line in lines):
        # No nameserver means the C library asks the loopback: the same case.
        changed = True
        lines.append(f"nameserver {SLIRP_DNS}")
    return "\n".join([*lines, ""]).encode() if changed else None


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf_mount(data_fd: int, host: Path = HOST_RESOLV_CONF) -> list[str]:
    """bubblewrap options mounting the replacement read from ``data_fd`` where the host's
    resolv.conf resolves to: often through a symlink into /run, which the sandbox has not
    got until this makes the directory."""
    target = os.path.realpath(host)
    return [
        *("--perms", "0755", "--dir", os.path.dirname(target)),
        *("--perms", "0644", "--ro-bind-data", str(data_fd), target),
    ]


def _slirp_argv(
    binary: str, *, ready_fd: int, exit_fd: int, netns_fd: int, userns_fd: int | None
) -> list[str]:
    """slirp4netns for the namespace open at ``netns_fd`` (joining the user namespace at
    ``userns_fd`` first, when unprivileged), with no way to the host's loopback."""
    argv = [
        binary,
        "--configure",
        f"--mtu={MTU}",
        "--disable-host-loopback",
        "--enable-sandbox",
        "--enable-seccomp",
        f"--ready-fd={ready_fd}",
        f"--exit-fd={exit_fd}",
    ]
    if userns_fd is not None:
        argv.append(f"--userns-path=/proc/self/fd/{userns_fd}")
    return [*argv, "--netns-type=path", f"/proc/self/fd/{netns_fd}", TAP_DEVICE]


@dataclass
class Uplink:
    """A running slirp4netns serving one sandbox's network namespace."""

    process: asyncio.subprocess.Process
    # Ours to close: slirp4netns exits when this pipe's write end closes.
    exit_write: int
    errors: Output
    reader: asyncio.Task[None]

    @classmethod
    async def start(cls, *, netns_pid: int, privileged: bool) -> Uplink:
        """Connect the network namespace of ``netns_pid`` and wait until ``tap0`` is up.
        Unprivileged, slirp4netns first joins the user namespace that owns it."""
        binary = slirp4netns()
        if binary is None:
            raise UplinkFailed(SLIRP_MISSING)
        ready_read, ready_write = os.pipe()
        exit_read, exit_write = os.pipe()
        owned = [ready_write, exit_read]
        try:
            try:
                netns = os.open(f"/proc/{netns_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise UplinkFailed(f"the sandbox's network namespace is gone ({exc})") from exc
            owned.append(netns)
            userns = None if privileged else fcntl.ioctl(netns, NS_GET_USERNS)
            if userns is not None:
                owned.append(userns)
            argv = _slirp_argv(
                binary, ready_fd=ready_write, exit_fd=exit_read, netns_fd=netns, userns_fd=userns
            )
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={},
                pass_fds=tuple(owned),
                # Not in the server's process group: a Ctrl-C is the server's to handle.
                start_new_session=True,
            )
        except BaseException:
            close_fd(ready_read)
            close_fd(exit_write)
            raise
        finally:
            for fd in owned:
                close_fd(fd)
        assert process.stderr is not None
        errors = Output(limit=ERROR_BYTES)
        uplink = cls(
            process=process,
            exit_write=exit_write,
            errors=errors,
            reader=asyncio.create_task(errors.drain(process.stderr)),
        )
        try:
            await uplink._until_ready(ready_read)
        except BaseException:
            await uplink.stop()
            raise
        finally:
            close_fd(ready_read)
        return uplink

    async def _until_ready(self, ready_read: int) -> None:
        # slirp4netns writes "1" once tap0 is configured; EOF means it gave up.
        try:
            said = await within(read_until_eof(ready_read, limit=1), seconds=START_TIMEOUT_S)
        except TimeoutError:
            raise UplinkFailed(f"slirp4netns did not start within {START_TIMEOUT_S:g}s") from None
        if said == b"1":
            return
        with contextlib.suppress(TimeoutError):
            await within(self.process.wait(), seconds=STOP_TIMEOUT_S)
            await within(self.reader, seconds=STOP_TIMEOUT_S)
        said_lines = self.errors.text().strip().splitlines()
        raise UplinkFailed(
            f"slirp4netns failed (exit code {self.process.returncode})"
            + (f": {' / '.join(said_lines[-3:])}" if said_lines else "")
        )

    async def stop(self) -> None:
        """Stop slirp4netns (closing its exit fd) and wait for it; killed if it lingers."""
        close_fd(self.exit_write)
        # Once closed, the number may be reused by another file: never close it again.
        self.exit_write = -1
        try:
            await within(self.process.wait(), seconds=STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        finally:
            self.reader.cancel()


async def read_until_eof(fd: int, *, limit: int = 65536) -> bytes:
    """Read a pipe without blocking the event loop until EOF or ``limit`` bytes."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = bytearray()
    while len(data) < limit:
        readable = loop.create_future()
        loop.add_reader(fd, _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, limit - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _wake(future: asyncio.Future[None]) -> None:
    # Called again while the fd stays readable, until its reader is removed.
    if not future.done():
        future.set_result(None)


class StartGate:
    """Holds a command back until its network is up.

    bubblewrap's ``--block-fd`` would hold it too early: bubblewrap brings its namespace's
    ``lo`` up itself, and so does slirp4netns, and whichever comes second fails (bubblewrap
    dies on EEXIST). So the command's shell first says it has started (bubblewrap is done)
    and then waits for a go; a gate closed without a go never lets the command run."""

    def __init__(self) -> None:
        self.started_read, self.started_write = os.pipe()
        self.go_read, self.go_write = os.pipe()

    @property
    def inner_fds(self) -> tuple[int, int]:
        """The ends the sandbox's shell uses (inherited through bubblewrap)."""
        return self.started_write, self.go_read

    def argv(self, command: str) -> list[str]:
        """bash running ``command`` once the gate opens, with both ends closed first."""
        said, go = self.inner_fds
        prologue = (
            f"echo >&{said} && exec {said}>&- && read -r _ <&{go} && exec {go}<&- "
            '&& exec /bin/bash -c "$1"'
        )
        return ["/bin/bash", "-c", prologue, "bash", command]

    def close_inner(self) -> None:
        """Our copies of the sandbox's ends: once the sandbox has them, or never will."""
        close_fd(self.started_write)
        close_fd(self.go_read)

    async def started(self) -> bool:
        """Whether the command's shell started (False: bubblewrap failed before it)."""
        try:
            said = await within(read_until_eof(self.started_read, limit=1), seconds=START_TIMEOUT_S)
        except TimeoutError:
            raise UplinkFailed(f"the sandbox did not start within {START_TIMEOUT_S:g}s") from None
        return bool(said)

    def open(self) -> None:
        os.write(self.go_write, b"\n")

    def close(self) -> None:
        """Closed without ``open`` first, the command never runs."""
        close_fd(self.started_read)
        close_fd(self.go_write)
