"""The sandbox's walls against the kernel and the network: no user namespaces, a seccomp
filter on what a build never needs, nothing of the host's paths in /proc, and a network for
sources that allow it that reaches the outside but never the host's loopback services."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openjules.engine.sandbox import BubblewrapSandbox, Limits, Sandbox
from openjules.engine.sandbox.network import (
    SLIRP_DNS,
    describe_network,
    host_addresses,
    resolv_conf_mount,
    sandbox_resolv_conf,
)
from openjules.engine.sandbox.process import RunAs
from tests.engine.agent_support import needs_bubblewrap

REGISTRY = "https://pypi.org/simple"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

needs_slirp4netns = pytest.mark.skipif(
    shutil.which("slirp4netns") is None and not os.environ.get("CI"),
    reason="slirp4netns is not installed (make test installs it)",
)
x86_64_only = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the probe uses x86_64 system call numbers"
)


@pytest.fixture
def sandbox(own_user: RunAs | None) -> Sandbox:
    """Commands run as a uid held for this test alone (tests/engine/uid_support.py): no
    other test's processes count against its process limit."""
    return BubblewrapSandbox(
        limits=Limits(wall_seconds=120, processes=64, memory_bytes=1024**3),
    ).with_user(own_user)


@pytest.fixture
def workspace(tmp_path: Path, sandbox: Sandbox) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    tree.chmod(0o755)
    (tree / "README.md").write_text("hello\n")
    sandbox.prepare_workspace(tree)
    return tree


@needs_bubblewrap
async def test_user_namespaces_cannot_be_made(sandbox: Sandbox, workspace: Path) -> None:
    # With a user namespace the command would be root of its own and could mount.
    result = await sandbox.run(
        "unshare -U true; echo user=$?; "
        "unshare -Urm sh -c 'mount -t tmpfs none /mnt && echo MOUNTED'; echo mount=$?",
        workspace=workspace,
    )
    assert "user=0" not in result.output
    assert "user=" in result.output
    assert "MOUNTED" not in result.output
    assert "mount=0" not in result.output


@needs_bubblewrap
async def test_mounting_fails(sandbox: Sandbox, workspace: Path) -> None:
    result = await sandbox.run(
        "mount -t tmpfs none /mnt; echo mount=$?; unshare -m true; echo mountns=$?",
        workspace=workspace,
    )
    assert "mount=0" not in result.output
    assert "mountns=0" not in result.output


# Raw system calls through ctypes; each prints its errno (0: it worked). Calls an
# unprivileged process may make, so only a filter can be why they fail.
PROBE = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
def call(name, number, *args):
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    print(name, errno.errorcode.get(ctypes.get_errno(), "?") if result < 0 else "OK")
call("ptrace", 101, 0, 0, 0, 0)                 # PTRACE_TRACEME
call("keyctl", 250, 0, -3, 0)                   # KEYCTL_GET_KEYRING_ID, session keyring
call("add_key", 248, 0, 0, 0, 0, -3)            # a NULL type: EFAULT when not filtered
call("bpf", 321, 0, 0, 0)                       # BPF_MAP_CREATE with no attributes
call("io_uring_setup", 425, 1, 0)               # NULL params: EFAULT when not filtered
call("clone3", 435, 0, 0)                       # the C library falls back to clone
"""


@needs_bubblewrap
@x86_64_only
async def test_the_seccomp_filter_refuses_what_a_build_does_not_need(
    sandbox: Sandbox, workspace: Path
) -> None:
    result = await sandbox.run(f"python3 -c '{PROBE}'", workspace=workspace)
    assert result.exit_code == 0, result.output
    said = dict(line.split() for line in result.output.splitlines() if line.strip())
    assert said == {
        "ptrace": "EPERM",
        "keyctl": "EPERM",
        "add_key": "EPERM",
        "bpf": "EPERM",
        "io_uring_setup": "EPERM",
        "clone3": "ENOSYS",
    }


@needs_bubblewrap
async def test_proc_shows_none_of_the_hosts_paths(
    sandbox: Sandbox, workspace: Path, tmp_path: Path
) -> None:
    result = await sandbox.run(
        # /proc/1/environ: bubblewrap's, empty (or unreadable when it runs as root).
        "for f in /proc/1/cmdline /proc/self/environ /proc/1/environ; do "
        "echo \"== $f\"; cat $f | tr '\\0' '\\n'; done 2>&1",
        workspace=workspace,
    )
    assert "/usr/bin/bwrap" in result.output  # /proc/1/cmdline was read
    assert "HOME=/tmp" in result.output  # and so was the environment
    # bubblewrap is /proc/1 and read its mounts (the tree's host path) from a descriptor.
    assert str(tmp_path) not in result.output
    assert "--bind" not in result.output


THREADS_AND_PROCESSES = """
import concurrent.futures, subprocess
total = sum(concurrent.futures.ThreadPoolExecutor(4).map(abs, [-1, -2]))
print(total, subprocess.check_output(["echo", "sub"]).decode().strip())
"""


@needs_bubblewrap
async def test_builds_still_work(sandbox: Sandbox, workspace: Path) -> None:
    program = r"""
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static void *work(void *arg) { *(int *)arg *= 2; return NULL; }
int main(void) {
    int value = 21;
    pthread_t thread;
    if (pthread_create(&thread, NULL, work, &value) != 0) return 1;
    pthread_join(thread, NULL);
    pid_t child = fork();
    if (child == 0) _exit(7);
    int status;
    waitpid(child, &status, 0);
    printf("threaded=%d forked=%d\n", value, WEXITSTATUS(status));
    return 0;
}
"""
    (workspace / "probe.c").write_text(program)
    sandbox.prepare_workspace(workspace)
    result = await sandbox.run(
        "set -e; gcc -O1 -pthread -o probe probe.c && ./probe; "
        "git init -q . && git add -A && git -c user.name=t -c user.email=t@t commit -qm x "
        "&& git log --oneline | wc -l; "
        f"python3 -c '{THREADS_AND_PROCESSES}'",
        workspace=workspace,
    )
    assert result.exit_code == 0, result.output
    assert "threaded=42 forked=7" in result.output
    assert "\n1\n" in result.output
    assert "3 sub" in result.output


def _listener(address: str) -> Iterator[int]:
    server = socket.socket()
    server.bind((address, 0))
    server.listen()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HOST-SERVICE-BANNER\n")

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A service on the host's loopback, like the server's database or API."""
    yield from _listener("127.0.0.1")


@pytest.fixture
def host_wide_listener() -> Iterator[int]:
    """A service listening on all the host's interfaces (0.0.0.0)."""
    yield from _listener("0.0.0.0")


@needs_bubblewrap
@needs_slirp4netns
async def test_a_network_enabled_sandbox_cannot_reach_the_hosts_loopback(
    sandbox: Sandbox, workspace: Path, host_listener: int
) -> None:
    # Through the gateway, slirp4netns would otherwise forward to the host's 127.0.0.1.
    probe = "; ".join(
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{host_listener} && head -1 <&3'; "
        f"echo {name}=$?"
        for name, host in (("loopback", "127.0.0.1"), ("gateway", "10.0.2.2"))
    )
    result = await sandbox.run(probe, workspace=workspace, network=True)
    assert "HOST-SERVICE-BANNER" not in result.output
    assert "loopback=0" not in result.output
    assert "gateway=0" not in result.output
    assert "loopback=" in result.output
    assert "gateway=" in result.output


@needs_bubblewrap
@needs_slirp4netns
async def test_a_network_enabled_sandbox_cannot_reach_the_hosts_own_addresses(
    sandbox: Sandbox, workspace: Path, host_wide_listener: int
) -> None:
    # Through slirp4netns, a connection to the host's LAN address leaves as the host's own
    # socket: what listens on 0.0.0.0 (here: the machine's control API) would answer.
    addresses = host_addresses()
    if not addresses:
        pytest.skip("this host has no address besides loopback")
    probe = "; ".join(
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{host_wide_listener} && head -1 <&3'; "
        f"echo {host}=$?"
        for host in addresses
    )
    result = await sandbox.run(probe, workspace=workspace, network=True)
    assert "HOST-SERVICE-BANNER" not in result.output
    for host in addresses:
        assert f"{host}=" in result.output
        assert f"{host}=0" not in result.output


@needs_bubblewrap
@needs_slirp4netns
async def test_a_network_enabled_sandbox_downloads_from_the_package_registry(
    sandbox: Sandbox, workspace: Path
) -> None:
    # --isolated: the registry itself, not a local index or wheel directory of pip's config.
    result = await sandbox.run(
        "python3 -m pip download --isolated --no-cache-dir --no-deps -q "
        f"--index-url {REGISTRY} --cert {CA_BUNDLE} -d /workspace/downloads six==1.16.0",
        workspace=workspace,
        network=True,
    )
    assert result.exit_code == 0, result.output
    assert (workspace / "downloads" / "six-1.16.0-py2.py3-none-any.whl").is_file()


# A DNS query for pypi.org's address sent to slirp4netns' forwarder, which answers in place
# of a host resolver on the host's loopback.
DNS_PROBE = f"""
import socket, struct
query = struct.pack(">HHHHHH", 0x4a4a, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in "pypi.org".split(".")) + b"\\0"
query += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(query, ("{SLIRP_DNS}", 53))
answer = s.recv(512)
print("answers", struct.unpack(">H", answer[6:8])[0])
"""


@needs_bubblewrap
@needs_slirp4netns
async def test_the_slirp4netns_resolver_answers(sandbox: Sandbox, workspace: Path) -> None:
    result = await sandbox.run(f"python3 -c '{DNS_PROBE}'", workspace=workspace, network=True)
    assert result.exit_code == 0, result.output
    assert "answers 0" not in result.output
    assert "answers" in result.output


def test_a_loopback_resolver_is_replaced_by_slirp4netns_own(tmp_path: Path) -> None:
    stub = tmp_path / "stub-resolv.conf"
    stub.write_text("# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\nsearch corp\n")
    assert sandbox_resolv_conf(stub) == (
        f"# systemd-resolved\nnameserver {SLIRP_DNS}\noptions edns0\nsearch corp\n".encode()
    )
    mixed = tmp_path / "mixed"
    mixed.write_text("nameserver ::1\nnameserver 127.0.0.1\nnameserver 10.1.1.1\n")
    assert sandbox_resolv_conf(mixed) == f"nameserver {SLIRP_DNS}\nnameserver 10.1.1.1\n".encode()
    # A resolver the sandbox can reach through slirp4netns stays as the host has it.
    remote = tmp_path / "remote"
    remote.write_text("nameserver 10.255.255.53\n")
    assert sandbox_resolv_conf(remote) is None
    # No nameserver means the loopback to the C library.
    assert sandbox_resolv_conf(tmp_path / "absent") == f"nameserver {SLIRP_DNS}\n".encode()


def test_the_replacement_is_mounted_where_a_symlinked_resolv_conf_points(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run" / "systemd" / "resolve"
    run.mkdir(parents=True)
    (run / "stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    link = tmp_path / "resolv.conf"
    link.symlink_to(run / "stub-resolv.conf")
    mount = resolv_conf_mount(7, link)
    assert mount[mount.index("--dir") + 1] == str(run)
    assert mount[-3:] == ["--ro-bind-data", "7", str(run / "stub-resolv.conf")]


def _path_without_slirp4netns(tmp_path: Path) -> str:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("bwrap", "prlimit", "setpriv", "bash"):
        real = shutil.which(name)
        assert real is not None, f"{name} is needed by this test"
        (directory / name).symlink_to(real)
    return str(directory)


@needs_bubblewrap
async def test_without_slirp4netns_a_network_command_fails_clearly(
    sandbox: Sandbox, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without_slirp4netns(tmp_path))
    result = await sandbox.run("echo RAN", workspace=workspace, network=True)
    assert result.exit_code != 0
    assert "RAN" not in result.output
    assert "slirp4netns" in result.output
    assert "network" in result.output
    # The start-up line says so too (describe_sandbox appends this to its line).
    assert "slirp4netns is not installed" in describe_network()
