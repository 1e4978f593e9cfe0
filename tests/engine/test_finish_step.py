"""The finish step: ``finish`` is staged with the transcript, then the worker delivers and
completes. A run that dies in between (after staging, before COMPLETED) completes on
resume from what was staged, without asking the model again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.store import agent_state, jobs, tables
from openjules.store.agent_state import Finishing
from openjules.store.oneshot import run_write
from openjules.store.writer import ConnectionWriter
from openjules.testing import FakeModel, LiveServer
from tests.engine.agent_support import call, needs_bubblewrap, patch_applies
from tests.support import TERMINAL, kinds, list_activities, wait_for_state

pytestmark = needs_bubblewrap


def _rewind_to_staged_finish(server: LiveServer, session_id: str) -> None:
    """The state a worker leaves when it dies between staging the finish and completing:
    IN_PROGRESS, no sessionCompleted, no outputs, the finish in the transcript, and the
    job waiting to be reclaimed."""

    async def action(conn: AsyncConnection) -> None:
        a = tables.activities.c
        await conn.execute(
            delete(tables.activities).where(
                a.session_id == session_id, a.kind == "sessionCompleted"
            )
        )
        await conn.execute(
            update(tables.sessions)
            .where(tables.sessions.c.id == session_id)
            .values(state="IN_PROGRESS", outputs="[]")
        )
        transcript = await agent_state.load_transcript(conn, session_id=session_id)
        assert transcript is not None
        assert transcript.finishing is None
        transcript.finishing = Finishing(summary="Added notes.", commit_message="Add notes")
        await agent_state.save_transcript(
            ConnectionWriter(conn), session_id=session_id, transcript=transcript
        )
        await jobs.enqueue(ConnectionWriter(conn), session_id=session_id)

    run_write(server.settings.resolved_database_url(), action)


def test_a_run_that_died_after_staging_finish_completes_without_the_model(
    agent_server: LiveServer,
    client: httpx.Client,
    fake_model: FakeModel,
    source: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Notes"}]),
        call("write_file", path="NOTES.md", content="notes\n"),
        call("finish", summary="Added notes.", commit_message="Add notes"),
    )
    context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    sid = client.post("/sessions", json={"prompt": "Notes", "sourceContext": context}).json()["id"]
    first = wait_for_state(client, sid, set(TERMINAL))
    assert first["state"] == "COMPLETED"
    asked = len(fake_model.requests)

    _rewind_to_staged_finish(agent_server, sid)
    assert client.get(f"/sessions/{sid}").json()["state"] == "IN_PROGRESS"
    again = wait_for_state(client, sid, set(TERMINAL))

    assert again["state"] == "COMPLETED"
    assert len(fake_model.requests) == asked  # completed from the staged finish
    assert again["outputs"] == first["outputs"]
    items = list_activities(client, sid)
    assert kinds(items)[-1] == "sessionCompleted"
    assert kinds(items).count("sessionCompleted") == 1
    assert items[-1]["description"] == "Added notes."
    patch = again["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert (patch_applies(repo, patch, tmp_path) / "NOTES.md").read_text() == "notes\n"


def test_a_message_after_completion_is_answered_by_the_model_not_the_old_finish(
    client: httpx.Client, fake_model: FakeModel, source: str
) -> None:
    """The staged finish is cleared on completion: a follow-up runs the model again."""
    fake_model.push(
        call("propose_plan", steps=[{"title": "Notes"}]),
        call("finish", summary="First.", commit_message="First"),
        call("finish", summary="Second.", commit_message="Second"),
    )
    context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    sid = client.post("/sessions", json={"prompt": "Notes", "sourceContext": context}).json()["id"]
    assert wait_for_state(client, sid, set(TERMINAL))["state"] == "COMPLETED"
    client.post(f"/sessions/{sid}:sendMessage", json={"prompt": "One more thing"})
    deadline = time.monotonic() + 30
    while kinds(items := list_activities(client, sid)).count("sessionCompleted") < 2:
        assert time.monotonic() < deadline, kinds(items)
        time.sleep(0.05)
    assert items[-1]["description"] == "Second."
    assert fake_model.remaining == 0
