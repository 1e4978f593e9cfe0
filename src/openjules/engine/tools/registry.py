"""The tools offered to the model, per phase."""

from __future__ import annotations

from openjules.engine.tools.base import Phase, Tool
from openjules.engine.tools.control import (
    AskUserTool,
    CompleteStepTool,
    FinishTool,
    MessageUserTool,
    ProposePlanTool,
)
from openjules.engine.tools.files import EditFile, ListFiles, ReadFile, Search, WriteFile
from openjules.engine.tools.shell import Shell

ALL_TOOLS: tuple[Tool, ...] = (
    ListFiles(),
    ReadFile(),
    Search(),
    Shell(),
    WriteFile(),
    EditFile(),
    ProposePlanTool(),
    CompleteStepTool(),
    MessageUserTool(),
    AskUserTool(),
    FinishTool(),
)


def tools_for(phase: Phase) -> dict[str, Tool]:
    return {tool.name: tool for tool in ALL_TOOLS if phase in tool.phases}
