"""The bubblewrap sandbox keeps commands inside the workspace, off the network, away from
the server's secrets, and inside their limits; a timeout leaves nothing running."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from openjules.engine.sandbox import (
    BubblewrapSandbox,
    Limits,
    Sandbox,
    SandboxKind,
    UnsandboxedSandbox,
    sandbox_from_settings,
)
from openjules.engine.sandbox.process import RunAs, chown_tree
from openjules.settings import Settings
from tests.engine.agent_support import needs_bubblewrap
from tests.support import processes_with

pytestmark = needs_bubblewrap

NOBODY = 65534


@pytest.fixture
def sandbox(own_user: RunAs | None) -> Sandbox:
    """Commands run as a uid held for this test alone (tests/engine/uid_support.py): the
    fork bomb below counts against no other test's process limit, nor theirs against its."""
    return BubblewrapSandbox(
        limits=Limits(wall_seconds=20, processes=64, memory_bytes=512 * 1024**2),
    ).with_user(own_user)


@pytest.fixture
def workspace(tmp_path: Path, sandbox: Sandbox) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.md").write_text("hello\n")
    sandbox.prepare_workspace(tree)
    return tree


async def test_the_workspace_is_writable_and_the_system_is_read_only(
    sandbox: Sandbox, workspace: Path
) -> None:
    result = await sandbox.run(
        "cat README.md && echo made > new.txt && pwd && touch /usr/x 2>&1; echo usr=$?",
        workspace=workspace,
    )
    assert result.exit_code == 0
    assert "hello" in result.output
    assert "/workspace" in result.output
    assert "usr=1" in result.output
    assert (workspace / "new.txt").read_text() == "made\n"


@pytest.fixture
def server_secret() -> Iterator[Path]:
    """World-readable and world-writable, so only the sandbox's mounts can protect it."""
    data_dir = Path(tempfile.mkdtemp(prefix="oj-server-data-", dir="/tmp"))
    data_dir.chmod(0o777)
    secret = data_dir / "openjules.db"
    secret.write_text("TOP-SECRET-ROWS")
    secret.chmod(0o666)
    yield secret
    shutil.rmtree(data_dir)


async def test_files_outside_the_workspace_cannot_be_read_or_written(
    sandbox: Sandbox, workspace: Path, server_secret: Path
) -> None:
    secret, data_dir = server_secret, server_secret.parent
    result = await sandbox.run(
        f"cat {secret}; echo read=$?; echo x > {secret}; echo write=$?; ls {data_dir}; "
        f"cat {workspace}/README.md; echo host_path=$?",
        workspace=workspace,
    )
    assert "TOP-SECRET-ROWS" not in result.output
    assert "read=1" in result.output
    assert "write=1" in result.output
    assert "host_path=1" in result.output  # the host path of the tree is not mounted either
    with open(secret) as unchanged:  # noqa: ASYNC230 - a test's final check
        assert unchanged.read() == "TOP-SECRET-ROWS"


async def test_private_tmp_does_not_touch_the_hosts(sandbox: Sandbox, workspace: Path) -> None:
    marker = f"oj-sandbox-{os.getpid()}"
    result = await sandbox.run(f"echo x > /tmp/{marker} && ls /tmp", workspace=workspace)
    assert result.exit_code == 0
    assert not os.path.exists(f"/tmp/{marker}")  # noqa: ASYNC240 - a final check


@pytest.fixture
def host_listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
            accepted.append(conn)
            conn.sendall(b"HOST-SERVICE-BANNER\n")
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


async def test_a_loopback_listener_on_the_host_cannot_be_reached(
    sandbox: Sandbox, workspace: Path, host_listener: int
) -> None:
    result = await sandbox.run(
        f"exec 3<>/dev/tcp/127.0.0.1/{host_listener} && head -1 <&3; echo connect=$?",
        workspace=workspace,
    )
    assert "HOST-SERVICE-BANNER" not in result.output
    assert "connect=1" in result.output


async def test_the_environment_holds_none_of_the_servers_secrets(
    sandbox: Sandbox, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENJULES_MODEL_API_KEY", "sk-model-secret-123")
    monkeypatch.setenv("OPENJULES_GITHUB_TOKEN", "ghp_forge_secret_456")
    result = await sandbox.run("env", workspace=workspace)
    assert result.exit_code == 0
    assert "sk-model-secret-123" not in result.output
    assert "ghp_forge_secret_456" not in result.output
    assert "OPENJULES" not in result.output
    assert "PATH=" in result.output


def _unusual_sleep() -> str:
    """A sleep of a length no other process uses (another test's, another run's), to find
    its processes by."""
    return f"sleep {1000 + secrets.randbelow(10**6) / 10**6:.6f}"


async def test_a_timed_out_commands_background_children_are_gone(
    sandbox: Sandbox, workspace: Path
) -> None:
    marker = _unusual_sleep()
    result = await sandbox.run(
        f"({marker} &); nohup {marker} >/dev/null 2>&1 & {marker}",
        workspace=workspace,
        limits=Limits(wall_seconds=1.5),
    )
    assert result.timed_out
    assert "timed out" in result.output
    assert processes_with(marker) == []


async def test_background_children_die_when_the_command_ends(
    sandbox: Sandbox, workspace: Path
) -> None:
    marker = _unusual_sleep()
    result = await sandbox.run(
        f"nohup {marker} >/dev/null 2>&1 & echo started", workspace=workspace
    )
    assert result.exit_code == 0
    assert processes_with(marker) == []


async def test_a_fork_bomb_is_contained(sandbox: Sandbox, workspace: Path) -> None:
    bomb = f"bomb_{secrets.token_hex(4)}"  # a name no other process's command line has
    result = await sandbox.run(
        f"{bomb}() {{ {bomb} | {bomb} & }}; {bomb}; sleep 2; echo survived",
        workspace=workspace,
        limits=Limits(wall_seconds=6, processes=64),
    )
    # The bomb hits the process limit (fork fails) and everything is reaped afterwards.
    assert result.timed_out or "retry" in result.output or "fork" in result.output.lower()
    assert processes_with(bomb) == []
    check = await sandbox.run("echo alive", workspace=workspace)
    assert check.output.strip() == "alive"


async def test_a_memory_hog_is_contained(sandbox: Sandbox, workspace: Path) -> None:
    result = await sandbox.run(
        "python3 -c 'x = bytearray(3 * 1024**3); print(\"allocated\")'",
        workspace=workspace,
        limits=Limits(memory_bytes=512 * 1024**2),
    )
    assert result.exit_code != 0
    assert "allocated" not in result.output
    assert "MemoryError" in result.output


async def test_output_is_truncated_in_the_middle_with_a_marker(
    sandbox: Sandbox, workspace: Path
) -> None:
    result = await sandbox.run(
        "echo FIRST; head -c 200000 /dev/zero | tr '\\0' 'x'; echo; echo LAST",
        workspace=workspace,
        limits=Limits(output_bytes=4096),
    )
    assert result.truncated
    assert result.output.startswith("FIRST")
    assert result.output.rstrip().endswith("LAST")
    assert "bytes of output omitted" in result.output
    assert len(result.output) < 5000


def test_the_setting_picks_the_implementation() -> None:
    sandboxed = sandbox_from_settings(Settings(sandbox="bubblewrap", sandbox_uid=NOBODY))
    plain = sandbox_from_settings(Settings(sandbox=SandboxKind.UNSANDBOXED))
    assert isinstance(sandboxed, BubblewrapSandbox)
    assert sandboxed.kind is SandboxKind.BUBBLEWRAP
    assert isinstance(plain, UnsandboxedSandbox)
    assert plain.kind is SandboxKind.UNSANDBOXED


def test_an_unknown_sandbox_setting_is_refused_with_the_choices() -> None:
    # Settings refuse it before any sandbox is built (the CLI turns this into one line).
    with pytest.raises(ValidationError, match="'bubblewrap' or 'unsandboxed'"):
        Settings(sandbox="docker")


async def test_the_unsandboxed_development_backend_still_clears_the_environment(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENJULES_MODEL_API_KEY", "sk-model-secret-123")
    plain = sandbox_from_settings(Settings(sandbox="unsandboxed"))
    result = await plain.run("env; ulimit -u", workspace=workspace)
    assert result.exit_code == 0
    assert "sk-model-secret-123" not in result.output
    assert result.output.strip().endswith("256")  # the process limit still applies


# --- handing the work tree to the sandbox uid (root servers) ---------------------------


def _small_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "handed"
    (tree / "src" / "pkg").mkdir(parents=True)
    (tree / "README.md").write_text("hello\n")
    (tree / "src" / "pkg" / "mod.py").write_text("X = 1\n")
    (tree / "link").symlink_to("README.md")
    return tree


def _stats(tree: Path) -> dict[str, tuple[int, int, int]]:
    """(uid, gid, ctime_ns) of every entry of ``tree`` (symbolic links themselves)."""
    found = {}
    for path in [tree, *tree.rglob("*")]:
        st = os.lstat(path)
        found[str(path.relative_to(tree))] = (st.st_uid, st.st_gid, st.st_ctime_ns)
    return found


def _clock_moves_past(tree: Path, tmp_path: Path) -> None:
    """Until a change made now would give a file a later ctime than any in ``tree`` (the
    kernel's file clock ticks coarsely): so an unneeded chown would show."""
    latest = max(ctime for _uid, _gid, ctime in _stats(tree).values())
    probe = tmp_path / "clock-probe"
    probe.touch()
    deadline = time.monotonic() + 5
    while os.stat(probe).st_ctime_ns <= latest:
        assert time.monotonic() < deadline, "the file clock never moved on"
        os.utime(probe)


def _root_user(own_user: RunAs | None) -> RunAs:
    if own_user is None:
        pytest.skip("only a root server hands the tree to another uid")
    return own_user


async def test_handing_a_tree_to_its_owner_again_leaves_every_file_untouched(
    tmp_path: Path, own_user: RunAs | None
) -> None:
    user = _root_user(own_user)
    tree = _small_tree(tmp_path)
    chown_tree(tree, user)
    first = _stats(tree)
    assert {(uid, gid) for uid, gid, _ in first.values()} == {(user.uid, user.gid)}
    _clock_moves_past(tree, tmp_path)

    chown_tree(tree, user)

    assert _stats(tree) == first  # same owners, same ctimes: git need not read them again


async def test_a_tree_known_to_be_the_sandbox_users_is_not_walked(
    tmp_path: Path, own_user: RunAs | None
) -> None:
    user = _root_user(own_user)
    sandbox = BubblewrapSandbox().with_user(user)
    tree = _small_tree(tmp_path)  # the server's (root's) files
    before = _stats(tree)
    _clock_moves_past(tree, tmp_path)

    sandbox.prepare_workspace(tree, owned_by=(user.uid, user.gid))

    assert _stats(tree) == before


@pytest.mark.parametrize("owned_by", [None, (0, 0), "another sandbox uid"])
async def test_a_tree_of_another_owner_is_handed_to_the_sandbox_user(
    tmp_path: Path, own_user: RunAs | None, owned_by: tuple[int, int] | str | None
) -> None:
    user = _root_user(own_user)
    sandbox = BubblewrapSandbox().with_user(user)
    tree = _small_tree(tmp_path)
    if isinstance(owned_by, str):  # kept from a run whose uid was another one
        previous = (user.uid + 1, user.gid + 1)
        chown_tree(tree, RunAs(uid=previous[0], gid=previous[1]))
        owned_by = previous

    sandbox.prepare_workspace(tree, owned_by=owned_by)

    assert {(uid, gid) for uid, gid, _ in _stats(tree).values()} == {(user.uid, user.gid)}
