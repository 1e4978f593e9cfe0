"""Tools that steer the session rather than the code: plan, report, ask, finish."""

from __future__ import annotations

from pydantic import Field

from openjules.engine.tools.base import (
    AskUser,
    CompleteStep,
    Finish,
    MessageUser,
    Phase,
    ProposePlan,
    Tool,
    ToolArgs,
    ToolContext,
    ToolResult,
)


class PlanStepArgs(ToolArgs):
    title: str = Field(description="What this step does, in a short sentence.")
    description: str = Field(default="", description="Details: files, approach, checks.")


class ProposePlanArgs(ToolArgs):
    steps: list[PlanStepArgs] = Field(
        min_length=1, max_length=30, description="The plan, in order."
    )


class ProposePlanTool(Tool):
    name = "propose_plan"
    uses_workspace = False
    description = (
        "Propose the plan once you understand the task and the code. Each step should be "
        "a verifiable unit of work. Planning ends here."
    )
    Args = ProposePlanArgs
    phases = frozenset({Phase.PLANNING})

    async def run(self, ctx: ToolContext, args: ProposePlanArgs) -> ToolResult:
        steps = [(s.title.strip(), s.description.strip()) for s in args.steps]
        return ToolResult(content="Plan recorded.", effect=ProposePlan(steps=steps))


class CompleteStepArgs(ToolArgs):
    title: str = Field(description="What was done, as a short sentence.")
    description: str = Field(default="", description="Details worth reporting.")


class CompleteStepTool(Tool):
    name = "complete_step"
    uses_workspace = False
    description = (
        "Report that a plan step is done. The user sees the title, the description and "
        "the changes made so far."
    )
    Args = CompleteStepArgs
    phases = frozenset({Phase.WORK})

    async def run(self, ctx: ToolContext, args: CompleteStepArgs) -> ToolResult:
        return ToolResult(
            content="Step recorded.",
            effect=CompleteStep(title=args.title, description=args.description),
        )


class MessageArgs(ToolArgs):
    text: str = Field(min_length=1, description="The message.")


class MessageUserTool(Tool):
    name = "message_user"
    uses_workspace = False
    description = "Tell the user something without waiting for an answer."
    Args = MessageArgs

    async def run(self, ctx: ToolContext, args: MessageArgs) -> ToolResult:
        return ToolResult(content="Message sent.", effect=MessageUser(text=args.text))


class AskUserTool(Tool):
    name = "ask_user"
    uses_workspace = False
    description = (
        "Ask the user a question and stop until they answer. Use it only when you cannot "
        "proceed without their decision."
    )
    Args = MessageArgs

    async def run(self, ctx: ToolContext, args: MessageArgs) -> ToolResult:
        return ToolResult(
            content="Question sent; waiting for the answer.", effect=AskUser(question=args.text)
        )


class FinishArgs(ToolArgs):
    summary: str = Field(min_length=1, description="What was changed and how it was checked.")
    commit_message: str = Field(
        min_length=1,
        description="A commit message: a short subject line, a blank line, then a body.",
    )


class FinishTool(Tool):
    name = "finish"
    uses_workspace = False
    description = "Finish the task when every step is done and checked."
    Args = FinishArgs
    phases = frozenset({Phase.WORK})

    async def run(self, ctx: ToolContext, args: FinishArgs) -> ToolResult:
        return ToolResult(
            content="Finished.",
            effect=Finish(summary=args.summary, commit_message=args.commit_message),
        )
