"""The shell tool: one bash command in the sandbox, reported as "Ran bash command"."""

from __future__ import annotations

from pydantic import Field

from openjules._types import Artifact, BashOutput, Originator, ProgressUpdated
from openjules.engine.tools.base import Phase, Tool, ToolArgs, ToolContext, ToolResult
from openjules.store.activities import NewActivity
from openjules.timing import Part, span


class ShellArgs(ToolArgs):
    command: str = Field(description="A bash command, run in the repository root.")


class Shell(Tool):
    name = "shell"
    description = (
        "Run a bash command in the repository (the working directory is the repository "
        "root). Use it to build, test, and inspect. Output is truncated when long. During "
        "planning the repository is read-only."
    )
    Args = ShellArgs
    phases = frozenset(Phase)

    async def run(self, ctx: ToolContext, args: ShellArgs) -> ToolResult:
        with span(Part.COMMANDS):
            result = await ctx.sandbox.run(
                args.command,
                workspace=ctx.workspace.tree,
                network=ctx.network,
                read_only=ctx.phase is Phase.PLANNING,
                ro_binds=ctx.workspace.sandbox_binds(),
            )
        ran = BashOutput(command=args.command, output=result.output, exit_code=result.exit_code)
        # The shape Jules uses for command progress (spec §5.10 / §9.5).
        description = ran.description()
        artifacts = (
            [
                Artifact(
                    bash_output=BashOutput(
                        command=args.command, output=result.output, exit_code=result.exit_code
                    )
                )
            ]
            if ctx.bash_output_artifacts
            else []
        )
        activity = NewActivity(
            kind=ProgressUpdated(title="Ran bash command", description=description),
            originator=Originator.AGENT,
            artifacts=artifacts,
        )
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        content = f"{result.output}\n[{status}]"
        if result.workspace_over is not None:
            # First, so the model reads why before the command's own (cut short) output.
            content = f"Error: {result.workspace_over.message()}\n{content}"
        return ToolResult(
            content=content,
            activities=[activity],
            mutated=ctx.phase is Phase.WORK,
            is_error=result.workspace_over is not None,
        )
