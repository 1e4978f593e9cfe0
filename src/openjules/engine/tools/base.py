"""What a tool is: a name, a pydantic argument model (its JSON schema is what the model
sees), the phases it is offered in, and ``run`` returning a ``ToolResult``.

Tools never touch the database. What they mean for the session (a plan, a finished step,
a question) travels back as an ``Effect`` that the agent loop applies, with the
transcript, in one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from openjules.engine.sandbox import Sandbox
from openjules.engine.workspace import Workspace
from openjules.store.activities import NewActivity
from openjules.store.agent_state import Phase

__all__ = [
    "AskUser",
    "CompleteStep",
    "Effect",
    "Finish",
    "MessageUser",
    "Phase",
    "ProposePlan",
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolResult",
    "error",
]


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ProposePlan:
    steps: list[tuple[str, str]]  # (title, description)


@dataclass(frozen=True)
class CompleteStep:
    title: str
    description: str


@dataclass(frozen=True)
class MessageUser:
    text: str


@dataclass(frozen=True)
class AskUser:
    question: str


@dataclass(frozen=True)
class Finish:
    summary: str
    commit_message: str


Effect = ProposePlan | CompleteStep | MessageUser | AskUser | Finish


@dataclass
class ToolResult:
    content: str  # what the model reads
    activities: list[NewActivity] = field(default_factory=list)  # what users see
    mutated: bool = False  # the work tree may have changed: take a checkpoint
    # With ``mutated``: the only paths (relative to the tree) that changed, when the tool
    # knows them (the file tools); None when anything may have (a shell command).
    changed_paths: tuple[str, ...] | None = None
    effect: Effect | None = None
    is_error: bool = False


@dataclass(frozen=True)
class ToolContext:
    workspace: Workspace
    sandbox: Sandbox
    network: bool
    phase: Phase
    max_read_chars: int = 50_000
    bash_output_artifacts: bool = False


class Tool(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[ToolArgs]]
    phases: ClassVar[frozenset[Phase]] = frozenset(Phase)
    # Whether the tool reads or changes the work tree: such a call waits until the
    # workspace is ready (the first model turn is asked while it is being prepared).
    uses_workspace: ClassVar[bool] = True

    def schema(self) -> dict[str, Any]:
        parameters = self.Args.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }

    def parse(self, raw: dict[str, Any]) -> ToolArgs:
        """Validate arguments; ValueError carries a message the model can act on."""
        try:
            return self.Args.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"invalid arguments for {self.name}: {problems}") from exc

    @abstractmethod
    async def run(self, ctx: ToolContext, args: Any) -> ToolResult: ...


def error(message: str) -> ToolResult:
    return ToolResult(content=f"Error: {message}", is_error=True)
