"""Moves sessions through the state machine the way the agent will (issue 3), by calling
the store's public transition functions. Used where a test needs a plan or an ending."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import (
    AgentMessaged,
    Artifact,
    ChangeSet,
    GitPatch,
    Originator,
    ProgressUpdated,
    SessionCompleted,
    SessionOutput,
)
from openjules.settings import Settings
from openjules.store import plans, transitions
from openjules.store.activities import NewActivity
from openjules.store.oneshot import run_write
from openjules.store.plans import StepDraft
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter

T = TypeVar("T")


def _run(settings: Settings, action: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    return run_write(settings.resolved_database_url(), action)


def propose_plan(
    settings: Settings, session_id: str, *, steps: list[str], require_approval: bool
) -> str:
    """QUEUED -> PLANNING -> plan; returns the plan id."""

    async def action(conn: AsyncConnection) -> str:
        writer = ConnectionWriter(conn)
        await transitions.apply(writer, session_id=session_id, event=Event.START_PLANNING)
        plan, _ = await plans.propose(
            writer,
            session_id=session_id,
            steps=[StepDraft(title=t, description=f"Do {t}") for t in steps],
            require_approval=require_approval,
        )
        return plan.id

    return _run(settings, action)


def add_progress(settings: Settings, session_id: str, *, titles: list[str]) -> None:
    async def action(conn: AsyncConnection) -> None:
        await transitions.apply(
            ConnectionWriter(conn),
            session_id=session_id,
            event=Event.PROGRESS,
            new_activities=[
                NewActivity(kind=ProgressUpdated(title=t), originator=Originator.AGENT)
                for t in titles
            ],
        )

    _run(settings, action)


def ask_user(settings: Settings, session_id: str, *, question: str) -> None:
    async def action(conn: AsyncConnection) -> None:
        await transitions.apply(
            ConnectionWriter(conn),
            session_id=session_id,
            event=Event.AGENT_ASKED,
            new_activities=[
                NewActivity(kind=AgentMessaged(agent_message=question),
                            originator=Originator.AGENT)
            ],
        )

    _run(settings, action)


def complete(settings: Settings, session_id: str, *, patch: str, base_commit: str,
             source: str = "") -> None:
    """IN_PROGRESS -> COMPLETED with a final changeSet activity and output."""
    change_set = ChangeSet(
        source=source,
        git_patch=GitPatch(unidiff_patch=patch, base_commit_id=base_commit,
                           suggested_commit_message="Apply the change"),
    )

    async def action(conn: AsyncConnection) -> None:
        await transitions.apply(
            ConnectionWriter(conn),
            session_id=session_id,
            event=Event.COMPLETED,
            new_activities=[
                NewActivity(kind=SessionCompleted(), originator=Originator.AGENT,
                            artifacts=[Artifact(change_set=change_set)])
            ],
            outputs=[SessionOutput(change_set=change_set)],
        )

    _run(settings, action)
