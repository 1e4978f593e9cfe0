"""The agent loop on its own: a real model endpoint (the fake model over HTTP) and an
in-memory journal (the ``Journal`` protocol), with no database and no runner. What the
loop hands the journal, and what it asks the model, is what these tests look at."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from openjules.engine.agent import Agent, AgentLimits, Step, StepOutcome
from openjules.engine.model import Model, ModelConfig
from openjules.engine.sandbox import sandbox_from_settings
from openjules.engine.tools.base import AskUser, Finish, ProposePlan, ToolContext
from openjules.engine.workspace import create_empty
from openjules.settings import Settings
from openjules.store.agent_state import Finishing, Phase, Transcript
from openjules.testing import FakeModel, Reply, ToolCall


@dataclass
class MemoryJournal:
    """Keeps what the agent records; plans are approved at once, questions wait."""

    inbox: list[tuple[int, str]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def new_user_messages(self, *, after_us: int) -> list[tuple[int, str]]:
        return [(at, text) for at, text in self.inbox if at > after_us]

    async def record(self, step: Step) -> StepOutcome:
        self.steps.append(step)
        self.effects.append(type(step.effect).__name__ if step.effect else "-")
        match step.effect:
            case ProposePlan():
                step.transcript.phase = Phase.WORK
            case AskUser():
                return StepOutcome(stop=True)
            case Finish(summary=summary, commit_message=message):
                step.transcript.finishing = Finishing(summary=summary, commit_message=message)
                return StepOutcome(stop=True, finishing=True)
        return StepOutcome(stop=False)

    async def fail(self, *, reason: str, transcript: Transcript) -> None:
        self.failures.append(reason)


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(name, arguments)])


def offered(request: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools", [])}


def user_texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture
async def model(fake_model: FakeModel) -> AsyncIterator[Model]:
    client = Model(
        ModelConfig(base_url=fake_model.base_url, api_key="sk-fake", model="m", max_retries=0)
    )
    yield client
    await client.close()


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    workspace, _base = create_empty(root=tmp_path / "ws")
    return ToolContext(
        workspace=workspace,
        sandbox=sandbox_from_settings(Settings(sandbox="unsandboxed")),
        network=False,
        phase=Phase.PLANNING,
    )


def transcript() -> Transcript:
    return Transcript(
        messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "Do it"}]
    )


async def test_plan_work_and_finish_are_handed_to_the_journal_in_order(
    fake_model: FakeModel, model: Model, context: ToolContext
) -> None:
    fake_model.push(
        call("propose_plan", steps=[{"title": "Write notes", "description": "d"}]),
        call("write_file", path="notes.md", content="hello\n"),
        call("complete_step", title="Wrote notes"),
        call("finish", summary="Added notes", commit_message="Add notes"),
    )
    journal = MemoryJournal()
    script = transcript()
    finished = await Agent(
        model=model, journal=journal, context=context, limits=AgentLimits()
    ).run(script)

    assert finished is True
    assert journal.effects == ["ProposePlan", "-", "CompleteStep", "Finish"]
    assert [s.mutated for s in journal.steps] == [False, True, False, False]
    assert (context.workspace.tree / "notes.md").read_text() == "hello\n"
    assert script.finishing == Finishing(summary="Added notes", commit_message="Add notes")
    # Planning offers read-only tools; once the journal moves to WORK, editing tools appear.
    first, second = fake_model.requests[0], fake_model.requests[1]
    assert "propose_plan" in offered(first)
    assert "write_file" not in offered(first)
    assert {"write_file", "finish"} <= offered(second)
    assert "propose_plan" not in offered(second)
    assert journal.failures == []


async def test_a_user_message_reaches_the_model_before_its_next_call(
    fake_model: FakeModel, model: Model, context: ToolContext
) -> None:
    journal = MemoryJournal()
    answered = {"n": 0}

    def respond(body: dict[str, Any]) -> Reply:
        answered["n"] += 1
        if answered["n"] == 1:
            journal.inbox.append((5_000, "Please also add a README"))
            return call("list_files", path=".")
        return call("ask_user", text="Which license?")

    fake_model.respond_with(respond)
    script = transcript()
    finished = await Agent(
        model=model, journal=journal, context=context, limits=AgentLimits()
    ).run(script)

    assert finished is False  # the question stops the run; nothing is finishing
    assert "Please also add a README" not in user_texts(fake_model.requests[0])
    assert user_texts(fake_model.requests[1])[-1] == "Please also add a README"
    assert script.last_user_message_time == 5_000
    assert journal.effects == ["-", "AskUser"]


async def test_calls_after_an_ending_call_in_the_same_turn_are_not_run(
    fake_model: FakeModel, model: Model, context: ToolContext
) -> None:
    fake_model.push(
        Reply(tool_calls=[
            ToolCall("ask_user", {"text": "Which file?"}),
            ToolCall("list_files", {"path": "."}),
        ])
    )
    journal = MemoryJournal()
    script = transcript()
    await Agent(model=model, journal=journal, context=context, limits=AgentLimits()).run(script)
    results = [m["content"] for m in script.messages if m["role"] == "tool"]
    assert results[0].startswith("Question sent")
    assert results[1] == "Error: Not run: an earlier call in this turn ended the turn."


async def test_the_turn_limit_fails_the_run_with_a_reason(
    fake_model: FakeModel, model: Model, context: ToolContext
) -> None:
    fake_model.respond_with(lambda _body: call("list_files", path="."))
    journal = MemoryJournal()
    finished = await Agent(
        model=model, journal=journal, context=context, limits=AgentLimits(max_turns=3)
    ).run(transcript())
    assert finished is False
    assert len(fake_model.requests) == 3
    assert journal.failures == ["The session used its limit of 3 model turns."]


async def test_replies_without_tools_are_nudged_then_fail_the_run(
    fake_model: FakeModel, model: Model, context: ToolContext
) -> None:
    fake_model.respond_with(lambda _body: Reply(content="I think we should…"))
    journal = MemoryJournal()
    finished = await Agent(
        model=model, journal=journal, context=context, limits=AgentLimits(max_idle_replies=3)
    ).run(transcript())
    assert finished is False
    assert journal.effects == ["-", "-"]  # two nudges recorded, the third reply fails
    assert len(journal.failures) == 1
    assert "3 times in a row without using a tool" in journal.failures[0]
