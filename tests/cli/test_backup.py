"""`openjules backup` and `openjules restore` through the real command, against real
`openjules serve` processes: a backup taken while a session produces activities restores to
a server that shows every session and activity of that moment."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command

from openjules.store.migrate import alembic_config
from openjules.testing import FakeModel, Reply, ToolCall
from tests.cli.support import ServeProcess, Target, ok, refusal, run_openjules
from tests.support import list_activities, wait_for_state, walk

TICK = "MARK-TICK: keep reporting progress"
ASK = "MARK-ASK: ask me something"
PLAN = "MARK-PLAN: propose a plan"
# Pace of the endless session: an activity every few tens of milliseconds, so several are
# written while `openjules backup` runs, and the agent's turn limit is far away.
TICK_SECONDS = 0.03


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(name, arguments)])


def scripted(body: dict[str, Any]) -> Reply:
    """The model, by the session's prompt: every session first proposes a plan; then the
    TICK session messages the user forever and the ASK session asks a question."""
    messages = body["messages"]
    prompt = json.dumps(messages[:3])
    turns = sum(1 for m in messages if m["role"] == "assistant")
    if turns == 0:
        return call("propose_plan", steps=[{"title": "Do it", "description": "All of it."}])
    if ASK in prompt:
        return call("ask_user", text="Which colour should the button be?")
    time.sleep(TICK_SECONDS)
    return call("message_user", text=f"tick {turns}")


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel(scripted) as model:
        yield model


def target_in(tmp_path: Path, name: str) -> Target:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Target(backend="sqlite", home=home, data_dir=tmp_path / name)


def with_agent(target: Target, model: FakeModel) -> Target:
    return target.with_env(
        OPENJULES_MAX_CONCURRENT_SESSIONS="2",
        OPENJULES_MODEL_BASE_URL=model.base_url,
        OPENJULES_MODEL_API_KEY="sk-fake",
        OPENJULES_MODEL="fake-model",
        OPENJULES_AGENT_MAX_TURNS="1000000",
        # A short lease: a restored server takes a session over soon after a restore.
        OPENJULES_LEASE_SECONDS="2",
    )


Shown = dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]


def everything(client: httpx.Client) -> Shown:
    """Every session (without its server-specific url) and all its activities."""
    shown: Shown = {}
    for session in walk(client, "/sessions", "sessions"):
        session.pop("url", None)
        shown[session["id"]] = (session, list_activities(client, session["id"]))
    return shown


def session_ids(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as conn:
        return {str(row[0]) for row in conn.execute("SELECT id FROM sessions")}


def test_a_backup_taken_during_a_running_session_restores_every_session_and_activity(
    tmp_path: Path, fake_model: FakeModel
) -> None:
    original = with_agent(target_in(tmp_path, "original"), fake_model)
    backup = tmp_path / "backup.db"
    with ServeProcess(original, log_dir=tmp_path / "logs") as server:
        key = server.printed_key()
        assert key
        with server.client(key) as client:
            planned = client.post(
                "/sessions", json={"prompt": PLAN, "requirePlanApproval": True}
            ).json()["id"]
            asking = client.post("/sessions", json={"prompt": ASK}).json()["id"]
            ticking = client.post("/sessions", json={"prompt": TICK}).json()["id"]
            wait_for_state(client, planned, {"AWAITING_PLAN_APPROVAL"})
            wait_for_state(client, asking, {"AWAITING_USER_FEEDBACK"})
            deadline = time.monotonic() + 60
            while len(list_activities(client, ticking)) < 5:
                assert time.monotonic() < deadline, "the TICK session produced no activities"
                time.sleep(0.05)

            before = everything(client)
            ok(run_openjules(original, "backup", str(backup)))
            after = everything(client)
        server.terminate_cleanly()

    # The session was running while the backup was taken: the server wrote meanwhile.
    assert after[ticking][0]["state"] == "IN_PROGRESS"
    assert len(after[ticking][1]) > len(before[ticking][1])

    restored_target = target_in(tmp_path, "restored")
    out = ok(run_openjules(restored_target, "restore", str(backup)))
    assert "3 sessions" in out
    with ServeProcess(restored_target, log_dir=tmp_path / "logs") as restored_server:
        # Users and keys are in the database: the original key works on the restored one.
        with restored_server.client(key) as client:
            restored = everything(client)
        restored_server.terminate_cleanly()

    assert restored.keys() == before.keys() == after.keys()
    for sid in (planned, asking):
        assert restored[sid] == before[sid] == after[sid]
        assert restored[sid][1], "waiting sessions have their plan activities"
    # A consistent copy holds the activity stream as of one moment during the backup:
    # everything shown before it started, and a prefix of what was shown after it ended.
    session, activities = restored[ticking]
    assert activities[: len(before[ticking][1])] == before[ticking][1]
    assert activities == after[ticking][1][: len(activities)]
    assert session["state"] == "IN_PROGRESS"
    for field in ("id", "name", "prompt", "title", "createTime"):
        assert session[field] == after[ticking][0][field]

    # With workers, the restored server takes the interrupted session over (its lease
    # expired) and it goes on from its last recorded step.
    with ServeProcess(with_agent(restored_target, fake_model), log_dir=tmp_path / "logs") as again:
        with again.client(key) as client:
            deadline = time.monotonic() + 60
            while len(resumed := list_activities(client, ticking)) <= len(activities) + 2:
                assert time.monotonic() < deadline, "the restored session did not resume"
                time.sleep(0.1)
            assert resumed[: len(activities)] == activities
        again.terminate_cleanly()


def test_restore_refuses_while_a_server_uses_the_database_then_replaces_it(
    tmp_path: Path,
) -> None:
    target = target_in(tmp_path, "data")
    backup = tmp_path / "backup.db"
    logs = tmp_path / "logs"
    with ServeProcess(target, log_dir=logs) as server:
        key = server.printed_key()
        assert key
        with server.client(key) as client:
            kept = client.post("/sessions", json={"prompt": "in the backup"}).json()["id"]
            ok(run_openjules(target, "backup", str(backup)))
            later = client.post("/sessions", json={"prompt": "after the backup"}).json()["id"]

            line = refusal(run_openjules(target, "restore", str(backup)))
            assert "in use" in line, line
            assert "stop it" in line, line
            # The running server lost nothing.
            assert {s["id"] for s in walk(client, "/sessions", "sessions")} == {kept, later}
        server.terminate_cleanly()

    out = ok(run_openjules(target, "restore", str(backup)))
    aside = sorted(target.data_dir.glob("openjules.db.before-restore-*"))
    assert len(aside) == 1, list(target.data_dir.iterdir())
    assert str(aside[0]) in out
    assert session_ids(aside[0]) == {kept, later}, "the replaced database is kept whole"
    assert not list(target.data_dir.glob(".openjules.db.*")), "no staging file is left"

    with ServeProcess(target, log_dir=logs) as server:
        assert server.printed_key() is None, "the restored database has its users"
        with server.client(key) as client:
            assert [s["id"] for s in walk(client, "/sessions", "sessions")] == [kept]
        server.terminate_cleanly()


def test_restore_refuses_while_any_process_keeps_the_database_open(tmp_path: Path) -> None:
    target = target_in(tmp_path, "data")
    ok(run_openjules(target, "keys", "create", "--user", "alice"))
    backup = tmp_path / "backup.db"
    ok(run_openjules(target, "backup", str(backup)))
    url = f"sqlite+aiosqlite:///{target.sqlite_file}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        line = refusal(run_openjules(target, "restore", str(backup)))
        assert "in use" in line, line
    finally:
        holder.communicate("", timeout=30)
    ok(run_openjules(target, "restore", str(backup)))


# A process that does what a server does on start (store.backup.keep_open), until stdin ends.
HOLD_OPEN = """
import sys
from openjules.store.backup import keep_open
with keep_open(sys.argv[1]):
    print("open", flush=True)
    sys.stdin.read()
"""


def test_restore_refuses_while_an_idle_server_runs(tmp_path: Path) -> None:
    """A server without workers that has answered no request has no pooled connection."""
    target = target_in(tmp_path, "data")
    backup = tmp_path / "backup.db"
    with ServeProcess(target, log_dir=tmp_path / "logs") as server:
        ok(run_openjules(target, "backup", str(backup)))
        result = run_openjules(target, "restore", str(backup))
        server.terminate_cleanly()
    line = refusal(result)
    assert "in use" in line, line


def test_backup_refuses_to_overwrite_an_existing_file_unless_forced(tmp_path: Path) -> None:
    target = target_in(tmp_path, "data")
    ok(run_openjules(target, "keys", "create", "--user", "alice"))
    existing = tmp_path / "out" / "backup.db"
    existing.parent.mkdir()
    existing.write_text("precious")

    line = refusal(run_openjules(target, "backup", str(existing)))
    assert "already exists" in line, line
    assert "--force" in line, line
    assert existing.read_text() == "precious"
    assert [p.name for p in existing.parent.iterdir()] == ["backup.db"]

    out = ok(run_openjules(target, "backup", str(existing), "--force"))
    assert str(existing) in out, out
    assert "0 sessions" in out, out
    assert [p.name for p in existing.parent.iterdir()] == ["backup.db"], "no temporary left"
    with closing(sqlite3.connect(existing)) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("alice",)]
        # One self-contained file: not in WAL mode, so nothing else has to be copied along.
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_restore_refuses_what_is_not_an_openjules_backup(tmp_path: Path) -> None:
    target = target_in(tmp_path, "data")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n")
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE things (x)")
    newer = tmp_path / "newer.db"
    command.upgrade(alembic_config(f"sqlite:///{newer}"), "head")
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")

    cases = [
        (tmp_path / "missing.db", "does not exist"),
        (text_file, "is not a SQLite database"),
        (other, "not an openjules one"),
        (newer, "newer than this openjules knows"),
    ]
    for path, says in cases:
        line = refusal(run_openjules(target, "restore", str(path)))
        assert str(path) in line, line
        assert says in line, line
    assert not target.data_dir.exists(), "a refused restore creates nothing"


def test_restore_migrates_a_backup_of_an_older_schema(tmp_path: Path) -> None:
    older = tmp_path / "older.db"
    command.upgrade(alembic_config(f"sqlite:///{older}"), "0002")
    target = target_in(tmp_path, "data")
    out = ok(run_openjules(target, "restore", str(older)))
    assert "migrated from schema 0002" in out, out
    with closing(sqlite3.connect(target.sqlite_file)) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision != "0002"
    assert revision in out, out


def test_postgresql_is_backed_up_with_pg_dump(tmp_path: Path) -> None:
    target = Target(
        backend="postgresql",
        home=tmp_path,
        data_dir=tmp_path / "data",
        database_url="postgresql+psycopg://postgres:hunter2@127.0.0.1:5432/openjules",
    )
    for verb, tool in (("backup", "pg_dump"), ("restore", "pg_restore")):
        line = refusal(run_openjules(target, verb, str(tmp_path / "backup.db")))
        assert tool in line, line
        assert '"Backups" section of the README' in line, line
        assert "hunter2" not in line
    assert not (tmp_path / "backup.db").exists()
