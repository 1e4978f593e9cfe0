"""The journal: records each agent step in one transaction (transcript, activities, state,
checkpoint), turning tool effects into the session's activities and transitions."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import FailedPrecondition, NotFound
from openjules._types import (
    AgentMessaged,
    Artifact,
    ChangeSet,
    GitPatch,
    Originator,
    ProgressUpdated,
    SessionCompleted,
    SessionFailed,
    SessionOutput,
    State,
)
from openjules.engine import prompts
from openjules.engine.agent import Step, StepOutcome
from openjules.engine.forge.delivery import Delivered, Publisher
from openjules.engine.tools.base import (
    AskUser,
    CompleteStep,
    Finish,
    MessageUser,
    Phase,
    ProposePlan,
)
from openjules.engine.workspace import Workspace
from openjules.store import agent_state, plans, transitions
from openjules.store.activities import NewActivity
from openjules.store.agent_state import Checkpoint, Transcript
from openjules.store.database import Database
from openjules.store.plans import StepDraft
from openjules.store.transitions import Event


@dataclass
class DatabaseJournal:
    db: Database
    session_id: str
    workspace: Workspace
    base_commit: str
    source: str  # "" for a repoless session
    require_approval: bool
    # The patch as of the last file-changing step (the checkpoint's). Steps that only
    # report (complete_step, finish) reuse it: files change only through mutating tools.
    last_patch: str = ""
    # Pushes and opens the pull request on finish (AUTO_CREATE_PR sessions with a source).
    publisher: Publisher | None = None

    async def new_user_messages(self, *, after_us: int) -> list[tuple[int, str]]:
        async with self.db.read() as conn:
            return await agent_state.user_messages_after(
                conn, session_id=self.session_id, after_us=after_us
            )

    async def record(self, step: Step) -> StepOutcome:
        patch = None
        if step.mutated:
            patch = await asyncio.to_thread(self.workspace.patch, base_commit=self.base_commit)
            self.last_patch = patch
        delivered = Delivered()
        if isinstance(step.effect, Finish) and self.publisher is not None:
            # Before the step's transaction: the pull request must be among the outputs
            # the moment clients see COMPLETED.
            delivered = await self.publisher.publish(
                base_commit=self.base_commit,
                patch=self.last_patch,
                message=step.effect.commit_message,
                summary=step.effect.summary,
            )
        phase = Phase(step.transcript.phase)
        stop = False
        try:
            async with self.db.write() as conn:
                if patch is not None:
                    await agent_state.save_checkpoint(
                        conn,
                        session_id=self.session_id,
                        checkpoint=Checkpoint(base_commit=self.base_commit, patch=patch),
                    )
                if step.activities:
                    await transitions.apply(
                        conn,
                        session_id=self.session_id,
                        event=Event.PROGRESS,
                        new_activities=step.activities,
                    )
                effect = step.effect
                if isinstance(effect, ProposePlan):
                    _plan, result = await plans.propose(
                        conn,
                        session_id=self.session_id,
                        steps=[StepDraft(title=t, description=d) for t, d in effect.steps],
                        require_approval=self.require_approval,
                    )
                    if result.state is State.AWAITING_PLAN_APPROVAL:
                        stop = True
                    else:
                        phase = Phase.WORK
                        step.transcript.phase = phase.value
                        step.transcript.messages.append(
                            {
                                "role": "user",
                                "content": prompts.render("plan_approved", how=" automatically"),
                            }
                        )
                elif isinstance(effect, CompleteStep):
                    await self._apply(
                        conn,
                        Event.PROGRESS,
                        NewActivity(
                            kind=ProgressUpdated(
                                title=effect.title, description=effect.description
                            ),
                            originator=Originator.AGENT,
                            artifacts=[Artifact(change_set=self._change_set(self.last_patch))],
                        ),
                    )
                elif isinstance(effect, MessageUser):
                    await self._apply(
                        conn,
                        Event.AGENT_MESSAGED,
                        NewActivity(
                            kind=AgentMessaged(agent_message=effect.text),
                            originator=Originator.AGENT,
                        ),
                    )
                elif isinstance(effect, AskUser):
                    await self._apply(
                        conn,
                        Event.AGENT_ASKED,
                        NewActivity(
                            kind=AgentMessaged(agent_message=effect.question),
                            originator=Originator.AGENT,
                        ),
                    )
                    stop = True
                elif isinstance(effect, Finish):
                    change_set = self._change_set(self.last_patch, message=effect.commit_message)
                    finished = [
                        NewActivity(
                            kind=SessionCompleted(),
                            originator=Originator.AGENT,
                            description=effect.summary,
                            artifacts=[Artifact(change_set=change_set)],
                        )
                    ]
                    if delivered.notice:
                        finished.insert(
                            0,
                            NewActivity(
                                kind=AgentMessaged(agent_message=delivered.notice),
                                originator=Originator.AGENT,
                            ),
                        )
                    outputs = [SessionOutput(change_set=change_set)]
                    if delivered.pull_request is not None:
                        outputs.insert(0, SessionOutput(pull_request=delivered.pull_request))
                    await transitions.apply(
                        conn,
                        session_id=self.session_id,
                        event=Event.COMPLETED,
                        new_activities=finished,
                        outputs=outputs,
                    )
                    stop = True
                await agent_state.save_transcript(
                    conn, session_id=self.session_id, transcript=step.transcript
                )
        except (NotFound, FailedPrecondition):
            # Deleted, or moved on by someone else (e.g. failed by an operator): stop here.
            return StepOutcome(stop=True, phase=phase)
        return StepOutcome(stop=stop, phase=phase)

    async def fail(self, *, reason: str, transcript: Transcript) -> None:
        async with self.db.write() as conn:
            await agent_state.save_transcript(
                conn, session_id=self.session_id, transcript=transcript
            )
            await fail_session(conn, session_id=self.session_id, reason=reason)

    async def _apply(self, conn: AsyncConnection, event: Event, activity: NewActivity) -> None:
        await transitions.apply(
            conn, session_id=self.session_id, event=event, new_activities=[activity]
        )

    def _change_set(self, patch: str, *, message: str = "") -> ChangeSet:
        return ChangeSet(
            source=self.source,
            git_patch=GitPatch(
                unidiff_patch=patch,
                base_commit_id=self.base_commit,
                suggested_commit_message=message,
            ),
        )


async def fail_session(conn: AsyncConnection, *, session_id: str, reason: str) -> None:
    """FAILED with a ``sessionFailed`` activity; a session already ended is left alone."""
    with contextlib.suppress(NotFound, FailedPrecondition):
        await transitions.apply(
            conn,
            session_id=session_id,
            event=Event.FAILED,
            new_activities=[
                NewActivity(kind=SessionFailed(reason=reason), originator=Originator.SYSTEM)
            ],
        )
