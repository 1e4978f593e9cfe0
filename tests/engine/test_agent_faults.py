"""Fault tests, end to end through the HTTP API: a real server with workers and the fake
model over real HTTP. A model that rate-limits, errors, stalls or sends malformed tool
calls is survived; a model that only returns junk ends the session in FAILED with a reason
a person can read, within the configured limits; and no session is ever left in a running
state without a job that a worker holds or can claim."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openjules.engine import prompts
from openjules.settings import Settings
from openjules.store import tables
from openjules.store.database import Database
from openjules.testing import (
    FakeModel,
    Fault,
    LiveServer,
    Reply,
    Stall,
    ToolCall,
    provision_user,
    register_source,
)
from openjules.testing.fake_model import Step
from tests.conftest import backends_with_temporal
from tests.engine.agent_support import call, needs_bubblewrap, patch_applies
from tests.support import TERMINAL, api_client, kinds, list_activities, wait_for_state

pytestmark = needs_bubblewrap

backend = backends_with_temporal()
RUNNING = {"QUEUED", "PLANNING", "IN_PROGRESS"}
LIVE_JOB = {"ready", "leased"}
AWAITING = {"AWAITING_PLAN_APPROVAL", "AWAITING_USER_FEEDBACK"}
# A short client timeout and a few retries: stalls and faults cost seconds, not minutes.
FAST_MODEL = {"model_timeout_seconds": 1.0, "model_max_retries": 3}
PLANNING_TOOLS = "ask_user, list_files, message_user, propose_plan, read_file, search, shell"
PLAN = call("propose_plan", steps=[{"title": "Greet the world", "description": "Edit app.py"}])
EDIT = call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'")
FINISH = call("finish", summary="The app greets the world.", commit_message="Greet the world")


# --- harness ----------------------------------------------------------------------------


@dataclass
class Harness:
    live: LiveServer
    client: httpx.Client
    source: str
    model: FakeModel

    @property
    def settings(self) -> Settings:
        return self.live.settings

    def create(self, prompt: str, *, approval: bool = False) -> str:
        response = self.client.post("/sessions", json={
            "prompt": prompt, "requirePlanApproval": approval,
            "sourceContext": {"source": self.source,
                              "githubRepoContext": {"startingBranch": "main"}},
        })
        assert response.status_code == 200, response.text
        sid: str = response.json()["id"]
        return sid

    def failure(self, sid: str, *, timeout: float = 30) -> str:
        """Wait for ``sid`` to end; it must be FAILED by the system with a readable reason."""
        session = wait_for_state(self.client, sid, TERMINAL, timeout=timeout)
        assert session["state"] == "FAILED", session
        last = list_activities(self.client, sid)[-1]
        assert kinds([last]) == ["sessionFailed"], last
        assert last["originator"] == "system"
        reason: str = last["sessionFailed"]["reason"]
        assert_readable(reason)
        return reason


Serve = Callable[..., Harness]


@pytest.fixture
def serve(
    server_settings: Settings, fake_model: FakeModel, repo: Path, tmp_path: Path
) -> Iterator[Serve]:
    """``serve(**settings)``: a live server with workers, pointed at the fake model."""
    with ExitStack() as stack:
        def start(**overrides: Any) -> Harness:
            settings = server_settings.model_copy(update={
                "data_dir": tmp_path / f"data-{secrets.token_hex(3)}",
                "workers": 2,
                "model_base_url": fake_model.base_url,
                "model_api_key": "sk-fake",
                "model": "fake-model",
                "model_max_retries": 2,
                "model_timeout_seconds": 10.0,
                **overrides,
            })
            live = stack.enter_context(LiveServer(settings))
            key = provision_user(live.settings, name=f"faults-{secrets.token_hex(4)}")
            client = stack.enter_context(api_client(live.api, key))
            source = register_source(live.settings, location=str(repo), owner="acme",
                                     repo=f"greeter-{secrets.token_hex(3)}")
            return Harness(live=live, client=client, source=source, model=fake_model)

        yield start


class Timed:
    """A responder playing ``steps`` in order and noting when each request arrived."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self.steps: deque[Step] = deque(steps)
        self.arrivals: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, _body: dict[str, Any]) -> Step:
        with self._lock:
            self.arrivals.append(time.monotonic())
            return self.steps.popleft()


def tool_answers(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(tool name, content) of each tool message answering the request's latest tool calls."""
    messages: list[dict[str, Any]] = body["messages"]
    turn = max(i for i, m in enumerate(messages) if m["role"] == "assistant" and
               m.get("tool_calls"))
    names = {c["id"]: c["function"]["name"] for c in messages[turn]["tool_calls"]}
    answers = [(names[m["tool_call_id"]], m["content"]) for m in messages[turn + 1:]
               if m["role"] == "tool"]
    assert len(answers) == len(names), "every tool call gets exactly one answer"
    return answers


def assert_readable(reason: str) -> None:
    assert reason.strip(), "a failure names its reason"
    assert "Traceback" not in reason, reason
    assert 'File "' not in reason, reason
    assert not re.search(r"\b[A-Za-z]+(Error|Exception)\b", reason), reason


# --- the invariant: every running session has a live or reclaimable job -----------------


async def _sessions_and_jobs(url: str) -> list[tuple[str, str, str | None]]:
    db = Database(url)
    try:
        s, j = tables.sessions, tables.jobs
        query = select(s.c.id, s.c.state, j.c.state.label("job")).select_from(
            s.outerjoin(j, j.c.session_id == s.c.id))
        async with db.read() as conn:  # one statement: one consistent snapshot
            return [(r.id, r.state, r.job) for r in (await conn.execute(query)).all()]
    finally:
        await db.dispose()


def orphans(settings: Settings) -> tuple[list[str], list[str]]:
    """(running sessions without a ready/leased job, ended or waiting sessions whose job
    is still ready/leased). The first is never right; the second only for a moment, until
    the worker that ended the session releases its job."""
    rows = asyncio.run(_sessions_and_jobs(settings.resolved_database_url()))
    stranded = [f"{sid} {state} job={job}" for sid, state, job in rows
                if state in RUNNING and job not in LIVE_JOB]
    lingering = [f"{sid} {state} job={job}" for sid, state, job in rows
                 if state not in RUNNING and job in LIVE_JOB]
    return stranded, lingering


def assert_no_orphans(settings: Settings, *, settle_seconds: float = 10.0) -> None:
    """Every QUEUED/PLANNING/IN_PROGRESS session has a ready or leased job (a lease is
    live, or reclaimable once it expires); jobs of sessions that ended or wait for a person
    are done (allowing ``settle_seconds`` for the worker to release them)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        stranded, lingering = orphans(settings)
        assert not stranded, f"running sessions without a live or reclaimable job: {stranded}"
        if not lingering:
            return
        assert time.monotonic() < deadline, f"jobs left live after their session: {lingering}"
        time.sleep(0.05)


# --- 1. transient faults are survived ---------------------------------------------------


def test_rate_limits_server_errors_and_stalls_between_steps_are_survived(
    serve: Serve, repo: Path, tmp_path: Path
) -> None:
    h = serve(**FAST_MODEL)
    script = Timed([
        PLAN,
        Fault(429, retry_after=0.8),
        EDIT,
        Fault(500),
        Fault(503),
        call("shell", command="python3 app.py"),
        Stall(2.5),  # the client gives up after 1 s and asks again
        call("complete_step", title="Greeted the world"),
        FINISH,
    ])
    h.model.respond_with(script)
    sid = h.create("Make the app greet the world")
    session = wait_for_state(h.client, sid, TERMINAL, timeout=45)

    assert session["state"] == "COMPLETED", list_activities(h.client, sid)
    patch = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert (patch_applies(repo, patch, tmp_path) / "app.py").read_text() == (
        "print('hello, world')\n")
    assert kinds(list_activities(h.client, sid)) == [
        "planGenerated", "planApproved", "progressUpdated", "progressUpdated",
        "sessionCompleted"]
    assert not script.steps
    requests = h.model.requests
    assert len(requests) == 9
    # Each retry sent the very request that failed; no step was lost or repeated.
    assert requests[2] == requests[1]
    assert requests[5] == requests[4] == requests[3]
    assert requests[7] == requests[6]
    assert len({len(r["messages"]) for r in (requests[0], requests[1], requests[3],
                                            requests[6], requests[8])}) == 5
    # Retry-After was honoured (the SDK's own first backoff is at most 0.5 s).
    assert script.arrivals[2] - script.arrivals[1] >= 0.75
    # The stalled request was abandoned at the client timeout, not held to the end.
    assert script.arrivals[7] - script.arrivals[6] < 2.4
    assert_no_orphans(h.settings)


# --- 2. malformed tool calls are answered as tool errors --------------------------------


def test_malformed_unknown_and_misplaced_tool_calls_are_answered_as_tool_errors(
    serve: Serve, repo: Path, tmp_path: Path
) -> None:
    h = serve()
    h.model.push(
        # Planning: write_file exists but is not offered yet.
        call("write_file", path="app.py", content="rm -rf /\n"),
        # A tool that does not exist, next to a valid call that still runs.
        Reply(tool_calls=[ToolCall("rm_rf", {}), ToolCall("read_file", {"path": "app.py"})]),
        call("propose_plan"),  # missing field
        call("propose_plan", steps=[{"title": "Greet", "owner": "me"}]),  # extra field
        PLAN,
        Reply(tool_calls=[ToolCall("edit_file", '{"path": ')]),  # broken JSON
        Reply(tool_calls=[ToolCall("edit_file", '["app.py"]')]),  # JSON, not an object
        call("edit_file", path="app.py", old_text="'hello'", new_text="'bye'", force=True),
        call("edit_file", path="app.py", old_text="'hello'"),  # missing new_text
        EDIT,
        FINISH,
    )
    sid = h.create("Make the app greet the world")
    session = wait_for_state(h.client, sid, TERMINAL)

    assert session["state"] == "COMPLETED", list_activities(h.client, sid)
    assert h.model.remaining == 0
    requests = h.model.requests
    assert len(requests) == 11
    answers = [tool_answers(r) for r in requests[1:]]

    [(name, text)] = answers[0]
    assert name == "write_file"
    assert text == (f"Error: There is no tool named 'write_file' in this phase; "
                    f"available: {PLANNING_TOOLS}.")
    [(name, text), (read, content)] = answers[1]
    assert name == "rm_rf"
    assert text == (f"Error: There is no tool named 'rm_rf' in this phase; "
                    f"available: {PLANNING_TOOLS}.")
    assert read == "read_file"
    assert "print('hello')" in content
    [(_, text)] = answers[2]
    assert text.startswith("Error: invalid arguments for propose_plan: steps: Field required")
    assert "Call propose_plan again with valid JSON arguments." in text
    [(_, text)] = answers[3]
    assert "invalid arguments for propose_plan: steps.0.owner: Extra inputs are not " \
           "permitted" in text
    [(_, text)] = answers[4]
    assert text == "Plan recorded."
    [(name, text)] = answers[5]
    assert name == "edit_file"
    assert text.startswith("Error: arguments are not valid JSON (Expecting value at 9)")
    assert "Call edit_file again with valid JSON arguments." in text
    [(_, text)] = answers[6]
    assert text.startswith("Error: arguments must be a JSON object")
    [(_, text)] = answers[7]
    assert "invalid arguments for edit_file: force: Extra inputs are not permitted" in text
    [(_, text)] = answers[8]
    assert "invalid arguments for edit_file: new_text: Field required" in text
    [(_, text)] = answers[9]
    assert text == "Replaced 1 occurrence in app.py"
    # The tool schemas sent with each request match the phase.
    planning, work = ({t["function"]["name"] for t in r["tools"]}
                      for r in (requests[0], requests[5]))
    assert planning == set(PLANNING_TOOLS.split(", "))
    assert {"write_file", "edit_file", "complete_step", "finish"} <= work
    assert "propose_plan" not in work

    # Only what the valid calls did reached the user and the patch.
    assert kinds(list_activities(h.client, sid)) == [
        "planGenerated", "planApproved", "sessionCompleted"]
    patch = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert (patch_applies(repo, patch, tmp_path) / "app.py").read_text() == (
        "print('hello, world')\n")
    assert_no_orphans(h.settings)


# --- 3. a model that only returns junk fails the session with a reason ------------------


def test_replies_without_tool_calls_fail_after_max_idle_replies(serve: Serve) -> None:
    h = serve()
    h.model.push(Reply(content="I would rather chat."), Reply(), Reply(content="Hmm."),
                 Reply(content="never asked for"))
    sid = h.create("Make the app greet the world")
    reason = h.failure(sid)

    assert reason == ("The model replied 3 times in a row without using a tool, so the "
                      "task could not move forward.")
    assert h.model.remaining == 1  # exactly max_idle_replies (3) replies were asked for
    nudge = {"role": "user", "content": prompts.render("nudge")}
    requests = h.model.requests
    assert [r["messages"][-1] == nudge for r in requests] == [False, True, True]
    assert kinds(list_activities(h.client, sid)) == ["sessionFailed"]
    assert_no_orphans(h.settings)


@pytest.mark.parametrize(("limits", "expected_requests", "expected_reason"), [
    ({"agent_max_turns": 5}, 5, "The session used its limit of 5 model turns."),
    ({"agent_max_tokens": 100}, 1, "The session used its limit of 100 model tokens."),
], ids=["turns", "tokens"])
def test_a_model_that_calls_tools_forever_hits_the_limit(
    serve: Serve, limits: dict[str, int], expected_requests: int, expected_reason: str
) -> None:
    h = serve(**limits)
    h.model.respond_with(lambda _body: call("list_files"))
    sid = h.create("Make the app greet the world")
    reason = h.failure(sid)

    assert reason == expected_reason
    assert len(h.model.requests) == expected_requests
    assert kinds(list_activities(h.client, sid)) == ["sessionFailed"]
    assert_no_orphans(h.settings)


@pytest.mark.parametrize(("step", "settings", "expected_requests", "expected_reason"), [
    (Fault(500), FAST_MODEL, 4, "The model provider answered HTTP 500"),
    (Fault(429, retry_after=0.1), FAST_MODEL, 4,
     "The model provider kept rate-limiting requests (HTTP 429), even after 3 retries."),
    (Stall(1.5), {"model_timeout_seconds": 1.0, "model_max_retries": 1}, 2,
     "did not answer within 1s, even after 1 retry."),
], ids=["500", "429", "stall"])
def test_a_model_that_keeps_failing_fails_the_session_after_the_retries(
    serve: Serve, step: Step, settings: dict[str, float], expected_requests: int,
    expected_reason: str
) -> None:
    h = serve(**settings)
    h.model.respond_with(lambda _body: step)
    started = time.monotonic()
    sid = h.create("Make the app greet the world")
    reason = h.failure(sid, timeout=20)

    assert expected_reason in reason
    assert "Error code" not in reason  # the SDK's own prefix is not repeated to users
    # One model call and its retries; the job was not re-run on top of them.
    assert len(h.model.requests) == expected_requests
    assert time.monotonic() - started < 15
    assert kinds(list_activities(h.client, sid)) == ["sessionFailed"]
    assert_no_orphans(h.settings)


@pytest.mark.parametrize("body", [
    "<html><body>Bad gateway, but with a 200</body></html>",
    '{"choices": [{}]}',
    '{"choices": [{"message": null}]}',
    "[]",
], ids=["html", "choice-without-message", "null-message", "list"])
def test_a_model_answering_junk_bodies_fails_the_session_at_once(
    serve: Serve, body: str
) -> None:
    h = serve()
    h.model.respond_with(lambda _body: Fault(200, body=body))
    started = time.monotonic()
    sid = h.create("Make the app greet the world")
    # Not an internal error after the runner's retries: a model failure, straight away.
    reason = h.failure(sid, timeout=12)

    assert reason.startswith("The model at ")
    assert "openjules hit an internal error" not in reason
    assert len(h.model.requests) == 1
    assert time.monotonic() - started < 12
    assert_no_orphans(h.settings)


# --- 4. many sessions at once: nothing is stranded --------------------------------------


class ByPrompt:
    """Each session's script, chosen by its prompt and how far its transcript got. A
    session whose prompt says "flaky" gets one 503 for each of its requests first."""

    def __init__(self) -> None:
        self._faulted: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Step:
        messages: list[dict[str, Any]] = body["messages"]
        prompt: str = messages[1]["content"]
        turn = sum(1 for m in messages if m["role"] == "assistant")
        with self._lock:
            if "flaky" in prompt and (prompt, turn) not in self._faulted:
                self._faulted.add((prompt, turn))
                return Fault(503)
        if prompt.startswith("complete"):
            name = prompt.split()[-1]
            script: list[Step] = [
                call("propose_plan", steps=[{"title": f"Write {name}"}]),
                call("write_file", path=f"{name}.txt", content=f"{name}\n"),
                Reply(tool_calls=[ToolCall("nope", {})]),
                call("finish", summary=f"Wrote {name}.", commit_message=f"Add {name}"),
            ]
            return script[min(turn, len(script) - 1)]
        if prompt.startswith("junk"):
            return Reply(content="Just chatting.")
        if prompt.startswith("broken"):
            return Fault(500)
        if prompt.startswith("ask"):
            return call("ask_user", text="Which greeting?")
        if prompt.startswith("plan"):
            return PLAN
        raise AssertionError(f"unexpected prompt {prompt!r}")


def test_many_concurrent_sessions_leave_no_session_without_a_job(serve: Serve) -> None:
    h = serve(workers=3, model_max_retries=1)
    h.model.respond_with(ByPrompt())
    expected = {
        "complete flaky one": "COMPLETED", "complete two": "COMPLETED",
        "complete flaky three": "COMPLETED", "junk chatter": "FAILED", "broken model": "FAILED",
        "ask a question": "AWAITING_USER_FEEDBACK", "plan for approval": "AWAITING_PLAN_APPROVAL",
    }
    sids = {prompt: h.create(prompt, approval=prompt.startswith("plan")) for prompt in expected}

    deadline = time.monotonic() + 60
    while True:
        stranded, _ = orphans(h.settings)  # checked while the sessions run, too
        assert not stranded, stranded
        sessions = {prompt: h.client.get(f"/sessions/{sid}").json()
                    for prompt, sid in sids.items()}
        states = {prompt: session["state"] for prompt, session in sessions.items()}
        if set(states.values()) <= TERMINAL | AWAITING:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)
    assert states == expected
    for prompt in ("complete flaky one", "complete two", "complete flaky three"):
        name = prompt.split()[-1]
        patch = sessions[prompt]["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
        assert f"+++ b/{name}.txt" in patch
        assert patch.count("+++ ") == 1
    assert "HTTP 500" in list_activities(h.client, sids["broken model"])[-1]["sessionFailed"][
        "reason"]
    assert_no_orphans(h.settings)

    # A failed session woken by a message runs again, and ends again, without orphans.
    junk = sids["junk chatter"]
    h.client.post(f"/sessions/{junk}:sendMessage", json={"prompt": "Please use tools."})
    assert h.failure(junk).startswith("The model replied 3 times")
    assert kinds(list_activities(h.client, junk)) == ["sessionFailed", "userMessaged",
                                                 "sessionFailed"]
    assert_no_orphans(h.settings)
