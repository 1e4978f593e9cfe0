"""The agent loop: ask the model, run the tools it calls, record the step; repeat.

One short loop in the style of mini-swe-agent. Everything that must survive a crash
(transcript, activities, state, checkpoint) is written by the ``Journal`` in one
transaction per step, so a resumed run continues from the last recorded step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from openjules.engine import prompts
from openjules.engine.model import Model, ModelError, ToolCallRequest
from openjules.engine.tools.base import Effect, Tool, ToolContext, ToolResult, error
from openjules.engine.tools.registry import schemas_for, tools_for
from openjules.store.activities import NewActivity
from openjules.store.agent_state import Phase, Transcript
from openjules.timing import Part, span

STOPPED_EARLY = "Not run: an earlier call in this turn ended the turn."


@dataclass(frozen=True)
class AgentLimits:
    max_turns: int = 100
    max_tokens: int = 2_000_000
    wall_seconds: float = 3600.0
    # Consecutive replies without a tool call before the session fails.
    max_idle_replies: int = 3
    tool_output_chars: int = 20_000
    # Older tool outputs are elided once the transcript is longer than this.
    compact_above_chars: int = 300_000
    keep_recent_messages: int = 24


@dataclass
class Step:
    """What one turn produced, handed to the journal to record atomically."""

    transcript: Transcript
    activities: list[NewActivity] = field(default_factory=list)
    mutated: bool = False
    # When ``mutated``: every path the step's tools changed, or None when a tool could
    # not say (a shell command may change anything).
    changed_paths: set[str] | None = field(default_factory=set)
    effect: Effect | None = None


@dataclass(frozen=True)
class StepOutcome:
    stop: bool  # the run ends here (the session waits, or moved on)
    # The step staged the session's finish; delivering and completing it is up to the
    # caller of ``Agent.run``.
    finishing: bool = False


class Journal(Protocol):
    async def new_user_messages(self, *, after_us: int) -> list[tuple[int, str]]: ...

    async def record(self, step: Step) -> StepOutcome: ...

    async def fail(self, *, reason: str, transcript: Transcript) -> None: ...


class Agent:
    def __init__(
        self,
        *,
        model: Model,
        journal: Journal,
        context: ToolContext,
        limits: AgentLimits,
        workspace_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.model = model
        self.journal = journal
        self.context = context
        self.limits = limits
        # Awaited before a tool that uses the work tree runs: the run asks the model while
        # the workspace is still being prepared. It raises what went wrong preparing it.
        self.workspace_ready = workspace_ready

    async def run(self, transcript: Transcript) -> bool:
        """Run turns until the session waits, finishes or fails; True when it finishes
        (the finish is staged in ``transcript.finishing``)."""
        started = time.monotonic()
        tokens = turns = idle = 0
        while True:
            for at, text in await self.journal.new_user_messages(
                after_us=transcript.last_user_message_time
            ):
                transcript.messages.append({"role": "user", "content": text})
                transcript.last_user_message_time = at
            reason = self._over_limit(turns=turns, tokens=tokens, started=started)
            if reason:
                await self.journal.fail(reason=reason, transcript=transcript)
                return False
            _compact(transcript.messages, self.limits)
            offered = list(schemas_for(transcript.phase))
            try:
                with span(Part.MODEL):
                    turn = await self.model.complete(messages=transcript.messages, tools=offered)
            except ModelError as exc:
                await self.journal.fail(reason=str(exc), transcript=transcript)
                return False
            turns += 1
            tokens += turn.prompt_tokens + turn.completion_tokens
            transcript.messages.append(turn.as_message())
            if not turn.tool_calls:
                idle += 1
                if idle >= self.limits.max_idle_replies:
                    await self.journal.fail(
                        reason=(
                            f"The model replied {idle} times in a row without using a tool, "
                            "so the task could not move forward."
                        ),
                        transcript=transcript,
                    )
                    return False
                transcript.messages.append({"role": "user", "content": prompts.render("nudge")})
                if (await self.journal.record(Step(transcript=transcript))).stop:
                    return False
                continue
            idle = 0
            step = await self._run_calls(
                turn.tool_calls, phase=transcript.phase, transcript=transcript
            )
            outcome = await self.journal.record(step)
            if outcome.stop:
                return outcome.finishing

    async def _run_calls(
        self, calls: list[ToolCallRequest], *, phase: Phase, transcript: Transcript
    ) -> Step:
        step = Step(transcript=transcript)
        tools = tools_for(phase)
        context = ToolContext(
            workspace=self.context.workspace,
            sandbox=self.context.sandbox,
            network=self.context.network,
            phase=phase,
            max_read_chars=self.context.max_read_chars,
            bash_output_artifacts=self.context.bash_output_artifacts,
        )
        for call in calls:
            if step.effect is not None:
                result = error(STOPPED_EARLY)
            else:
                result = await self._run_one(call, tools=tools, context=context)
            step.activities += result.activities
            if result.mutated:
                step.mutated = True
                if result.changed_paths is None or step.changed_paths is None:
                    step.changed_paths = None
                else:
                    step.changed_paths.update(result.changed_paths)
            if result.effect is not None and step.effect is None:
                step.effect = result.effect
            transcript.messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": _truncate(result.content, self.limits.tool_output_chars),
                }
            )
        return step

    async def _run_one(
        self, call: ToolCallRequest, *, tools: dict[str, Tool], context: ToolContext
    ) -> ToolResult:
        tool = tools.get(call.name)
        if tool is None:
            return error(
                f"There is no tool named {call.name!r} in this phase; "
                f"available: {', '.join(sorted(tools))}."
            )
        try:
            args = tool.parse(call.parsed_arguments())
        except ValueError as exc:
            return error(f"{exc}. Call {call.name} again with valid JSON arguments.")
        if tool.uses_workspace and self.workspace_ready is not None:
            await self.workspace_ready()
        result: ToolResult = await tool.run(context, args)
        return result

    def _over_limit(self, *, turns: int, tokens: int, started: float) -> str:
        if turns >= self.limits.max_turns:
            return f"The session used its limit of {self.limits.max_turns} model turns."
        if tokens >= self.limits.max_tokens:
            return f"The session used its limit of {self.limits.max_tokens:,} model tokens."
        if time.monotonic() - started >= self.limits.wall_seconds:
            return f"The session ran past its time limit of {self.limits.wall_seconds:.0f}s."
        return ""


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters truncated ...]\n{text[-half:]}"


def _compact(messages: list[dict[str, Any]], limits: AgentLimits) -> None:
    """Elide old tool outputs (keeping every message, so tool calls stay paired)."""
    if len(json.dumps(messages)) <= limits.compact_above_chars:
        return
    for message in messages[: -limits.keep_recent_messages]:
        content = message.get("content")
        if message.get("role") == "tool" and isinstance(content, str) and len(content) > 200:
            message["content"] = content[:200] + "\n[older output elided to save context]"
