"""The tools offered to the model, per phase."""

from __future__ import annotations

import functools
from typing import Any

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


@functools.cache
def schemas_for(phase: Phase) -> tuple[dict[str, Any], ...]:
    """The tool definitions the model is offered in ``phase``: the same every turn, so
    built once (pydantic's JSON schemas cost ~2 ms a turn)."""
    return tuple(tool.schema() for tool in tools_for(phase).values())
