"""Sandboxes cannot hurt each other or the host through shared resources: each running
session's commands have a uid of their own (so one session at its process limit leaves the
others free to fork), the work tree has a size limit the model is told about, and the
private /tmp has a size of its own. Real bubblewrap, real processes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from openjules.engine.sandbox import NoFreeUid, Sandbox, session_sandbox
from openjules.engine.sandbox.process import RunAs
from openjules.engine.sandbox.uids import UidPool
from openjules.engine.tools.base import Phase, ToolContext, ToolResult
from openjules.engine.tools.shell import Shell, ShellArgs
from openjules.engine.workspace import Workspace
from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer, provision_user
from openjules.testing import register_source as register
from tests.engine.agent_support import call, needs_bubblewrap
from tests.support import TERMINAL, api_client, list_activities, make_repo, wait_for_state

pytestmark = needs_bubblewrap
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="per-session uids need a root server (as in production)"
)

MIB = 1024**2
STOPPED = "the command was stopped. Delete files to go on."


def _tree(root: Path) -> Path:
    tree = root / "tree"
    tree.mkdir(parents=True)
    return tree


def _disk_usage(path: Path) -> int:
    """What `du` says, independently of the code under test."""
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[0])


def _processes_of(uid: int) -> int:
    """Processes whose real uid is ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            count += int(uid_line.split()[1]) == uid
    return count


@pytest.fixture
async def sandboxes() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def _session_sandbox(stack: AsyncExitStack, settings: Settings) -> Sandbox:
    return await stack.enter_async_context(session_sandbox(settings))


# --- processes: a uid per session ------------------------------------------------------


@needs_root
@pytest.mark.parametrize("own_uids", [True, False], ids=["a-uid-per-session", "one-shared-uid"])
async def test_a_session_holding_250_processes_leaves_another_sessions_commands_free_to_fork(
    tmp_path: Path, sandboxes: AsyncExitStack, own_uids: bool, own_user: RunAs | None
) -> None:
    # "one-shared-uid" is how every session ran before (one fixed sandbox_uid, 65534): the
    # control that shows this test sees the problem. The uid the two sessions share here is
    # held for this test alone (tests/engine/uid_support.py): its 250 processes as 65534
    # would leave any other test's commands as 65534 unable to fork.
    assert own_user is not None  # root
    settings = Settings(
        data_dir=tmp_path / "data",
        sandbox="bubblewrap",
        command_max_processes=256,
        sandbox_uid=None if own_uids else own_user.uid,
    )
    busy = await _session_sandbox(sandboxes, settings)
    other = await _session_sandbox(sandboxes, settings)
    busy_tree, other_tree = _tree(tmp_path / "busy"), _tree(tmp_path / "other")
    busy.prepare_workspace(busy_tree)
    other.prepare_workspace(other_tree)

    # 250 sleeping processes, then a file (a builtin: no fork needed) to say they run.
    holding = asyncio.ensure_future(
        busy.run("for i in $(seq 250); do sleep 300 & done; : > started; wait", workspace=busy_tree)
    )
    try:
        started = busy_tree / "started"
        for _ in range(400):
            if started.exists() or holding.done():
                break
            await asyncio.sleep(0.05)
        assert started.exists(), holding.result().output if holding.done() else "not started"
        busy_uid = started.stat().st_uid
        if own_uids:
            assert _processes_of(busy_uid) >= 250
        result = await other.run(
            "for i in $(seq 20); do /bin/true & done; wait; echo forked; id -u",
            workspace=other_tree,
        )
    finally:
        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
    if own_uids:
        assert result.exit_code == 0, result.output
        assert "Resource temporarily unavailable" not in result.output
        assert "forked" in result.output
        other_uid = int(result.output.split()[-1])
        assert other_uid != busy_uid
        assert {busy_uid, other_uid} <= set(range(200_000, 201_000))
    else:
        assert "Resource temporarily unavailable" in result.output


# --- uids: unique across processes ------------------------------------------------------

TAKE_ALL = """
import json, sys
from pathlib import Path
from openjules.engine.sandbox.uids import UidPool
pool = UidPool(locks=Path(sys.argv[1]), first=int(sys.argv[2]), count=int(sys.argv[3]))
held = []
while (lease := pool.try_take()) is not None:
    held.append(lease)
print(json.dumps([lease.uid for lease in held]), flush=True)
sys.stdin.read()  # hold them until told to stop (or killed)
"""


async def test_two_processes_never_hold_the_same_uid_and_a_dead_ones_come_free(
    tmp_path: Path,
) -> None:
    pool = UidPool(locks=tmp_path / "locks", first=300_000, count=5)
    mine = [pool.try_take(), pool.try_take()]
    assert None not in mine
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        TAKE_ALL,
        str(pool.locks),
        str(pool.first),
        str(pool.count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        theirs = json.loads(await child.stdout.readline())
        my_uids = {lease.uid for lease in mine if lease is not None}
        assert len(my_uids) == 2
        assert sorted(my_uids | set(theirs)) == list(range(300_000, 300_005))
        assert not my_uids & set(theirs)
        assert pool.try_take() is None  # all five are held, two here, three there
        with pytest.raises(NoFreeUid, match="OPENJULES_SANDBOX_UID_COUNT"):
            async with pool.lease(wait_seconds=0.2):
                pass
    finally:
        child.kill()  # no clean-up runs: the kernel drops a dead process's locks
        await child.wait()
    freed = pool.try_take()
    assert freed is not None
    assert freed.uid in theirs
    for lease in mine:
        assert lease is not None
        lease.release()
    async with pool.lease() as uid:  # a released uid is free again in this process too
        assert uid in my_uids or uid in theirs


# --- the work tree's size ---------------------------------------------------------------


async def _shell(sandbox: Sandbox, root: Path, command: str) -> ToolResult:
    context = ToolContext(
        workspace=Workspace(root), sandbox=sandbox, network=False, phase=Phase.WORK
    )
    return await Shell().run(context, ShellArgs(command=command))


@pytest.mark.parametrize("kind", ["bubblewrap", "unsandboxed"])
async def test_writing_past_the_workspace_limit_stops_the_command_with_a_tool_error(
    tmp_path: Path, sandboxes: AsyncExitStack, kind: str
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        sandbox=kind,
        workspace_max_mb=50,
        command_max_file_bytes=20 * MIB,
    )
    sandbox = await _session_sandbox(sandboxes, settings)
    root = tmp_path / "workspace"
    tree = _tree(root)
    sandbox.prepare_workspace(tree)

    # Ten files of 15 MB: each under the 20 MB file-size limit, 150 MB in all.
    filled = await _shell(
        sandbox,
        root,
        "for i in $(seq 10); do head -c 15M /dev/urandom > part$i; done; echo all-written",
    )
    assert filled.is_error
    assert filled.content.startswith("Error: The workspace is over its limit of 50 MB (now ")
    assert STOPPED in filled.content
    assert "all-written" not in filled.content
    used = _disk_usage(tree)
    assert 50 * MIB < used <= 80 * MIB  # stopped within two files of the limit

    # Over the limit, commands still run (to delete), and say so.
    still = await _shell(sandbox, root, "echo still-here")
    assert still.is_error
    assert "still-here" in still.content
    assert "The workspace is over its limit of 50 MB" in still.content
    assert "Delete files to go on." in still.content

    cleared = await _shell(sandbox, root, "rm part*; echo cleared")
    assert not cleared.is_error, cleared.content
    assert "cleared" in cleared.content
    again = await _shell(sandbox, root, "head -c 10M /dev/urandom > again && echo wrote")
    assert not again.is_error, again.content
    assert "wrote" in again.content
    assert (tree / "again").stat().st_size == 10 * MIB


async def test_writing_past_the_tmp_limit_fails_with_no_space_left(
    tmp_path: Path, sandboxes: AsyncExitStack
) -> None:
    settings = Settings(data_dir=tmp_path / "data", sandbox="bubblewrap", sandbox_tmp_mb=16)
    sandbox = await _session_sandbox(sandboxes, settings)
    tree = _tree(tmp_path)
    sandbox.prepare_workspace(tree)
    result = await sandbox.run(
        "head -c 8M /dev/zero > /tmp/small && echo small-fits; rm /tmp/small; "
        "head -c 32M /dev/zero > /tmp/big; echo big=$?",
        workspace=tree,
    )
    assert "small-fits" in result.output
    assert "No space left on device" in result.output
    assert "big=1" in result.output


# --- through the server: what a user sees ----------------------------------------------


def _server(
    server_settings: Settings, fake_model: FakeModel, tmp_path: Path, **overrides: Any
) -> LiveServer:
    return LiveServer(
        server_settings.model_copy(
            update={
                "data_dir": tmp_path / "data",
                "workers": 1,
                "model_base_url": fake_model.base_url,
                "model_api_key": "k",
                "model": "fake-model",
                **overrides,
            }
        )
    )


def _session(live: LiveServer, repo: Path) -> tuple[dict[str, Any], list[Any]]:
    key = provision_user(live.settings, name=f"u-{secrets.token_hex(3)}")
    source = register(
        live.settings, location=str(repo), owner="acme", repo=f"r-{secrets.token_hex(3)}"
    )
    with api_client(live.api, key) as c:
        created = c.post(
            "/sessions", json={"prompt": "Fill the disk", "sourceContext": {"source": source}}
        )
        sid = created.json()["id"]
        return wait_for_state(c, sid, TERMINAL), list_activities(c, sid)


def test_the_model_is_told_when_its_command_fills_the_workspace_and_can_go_on(
    server_settings: Settings, fake_model: FakeModel, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "small", {"app.py": "print('hello')\n"})
    fake_model.push(
        call("propose_plan", steps=[{"title": "Fill"}]),
        call("shell", command="for i in 1 2 3 4 5 6; do head -c 1M /dev/urandom > f$i; done"),
        call("shell", command="rm f*"),
        call("finish", summary="Done.", commit_message="Nothing"),
    )
    with _server(server_settings, fake_model, tmp_path, workspace_max_mb=2) as live:
        session, _ = _session(live, repo)
    assert session["state"] == "COMPLETED"
    told = fake_model.requests[2]["messages"][-1]["content"]
    assert told.startswith("Error: The workspace is over its limit of 2 MB (now ")
    assert "Delete files to go on." in told
    assert "over its limit" not in fake_model.requests[3]["messages"][-1]["content"]


def test_a_workspace_over_its_limit_as_the_run_starts_fails_the_session_saying_so(
    server_settings: Settings, fake_model: FakeModel, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "big", {"data.bin": os.urandom(3 * MIB).hex()[: 3 * MIB]})
    # The first turn is asked while the tree is checked out; its tool waits for the tree.
    fake_model.push(call("list_files", path="."), call("list_files", path="."))
    with _server(server_settings, fake_model, tmp_path, workspace_max_mb=2) as live:
        session, activities = _session(live, repo)
    assert session["state"] == "FAILED"
    reason = activities[-1]["sessionFailed"]["reason"]
    assert reason.startswith("The session's workspace is ")
    assert "MB, over its limit of 2 MB" in reason
    assert "OPENJULES_WORKSPACE_MAX_MB" in reason
    assert len(fake_model.requests) == 1  # no turn after the tree was found too large
