"""The journal: records each agent step in one transaction (transcript, activities, state,
checkpoint), turning tool effects into the session's activities and transitions.

It only records. A ``finish`` is staged with the transcript; delivering the changes and
completing the session is the session worker's finish step, which calls ``complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import assert_never

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
from openjules.engine.forge.delivery import Delivered
from openjules.engine.tools.base import AskUser, CompleteStep, Finish, MessageUser, ProposePlan
from openjules.engine.workspace import Workspace
from openjules.store import agent_state, plans, transitions
from openjules.store.activities import NewActivity
from openjules.store.agent_state import Checkpoint, Finishing, Phase, Transcript
from openjules.store.database import Database
from openjules.store.plans import StepDraft
from openjules.store.transitions import Event
from openjules.store.writer import Writer
from openjules.timing import Moment, Part, moment, span

GO_ON = StepOutcome(stop=False)
WAIT = StepOutcome(stop=True)


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
    # Whether the workspace's private index holds every change of the tree so far, so a
    # step whose tools name the paths they changed stages only those (a whole-tree add
    # looks at every file). False until the run's first patch where the run restored a
    # checkpoint or ran a setup script onto the tree.
    index_current: bool = False
    # Whether every file change so far is in a committed checkpoint (the tree is exactly
    # at ``last_patch``): only then may the tree be kept for the session's next run.
    at_checkpoint: bool = True
    # The private index's checksum when this run last computed ``last_patch`` from it.
    _patched_index: bytes = field(default=b"", init=False)

    async def new_user_messages(self, *, after_us: int) -> list[tuple[int, str]]:
        return await agent_state.user_messages_after(
            self.db.reads, session_id=self.session_id, after_us=after_us
        )

    async def record(self, step: Step) -> StepOutcome:
        if step.mutated:
            self.at_checkpoint = False
        patch = await self._patch(step)
        transcript = step.transcript
        phase, told = transcript.phase, len(transcript.messages)

        async def record_step(writer: Writer) -> StepOutcome:
            # A transaction whose connection failed before it could commit is done again
            # (``Database.transact``): each attempt starts from the transcript the agent
            # handed over, not from what the failed attempt added to it.
            transcript.phase = phase
            del transcript.messages[told:]
            # Paused or cancelled meanwhile: the step is not kept (a resumed run does it
            # again), and the agent stops here.
            await transitions.hold_working(writer, session_id=self.session_id)
            if patch is not None:
                checkpoint = Checkpoint(base_commit=self.base_commit, patch=patch)
                await agent_state.save_checkpoint(
                    writer, session_id=self.session_id, checkpoint=checkpoint
                )
            if step.activities:
                await self._transition(writer, Event.PROGRESS, *step.activities)
            outcome = await self._apply(writer, step)
            await agent_state.save_transcript(
                writer, session_id=self.session_id, transcript=transcript
            )
            return outcome

        try:
            outcome = await self.db.transact(record_step)
        except (NotFound, FailedPrecondition):
            # Deleted, paused, cancelled, or moved on by someone else (e.g. failed by an
            # operator): stop here.
            return WAIT
        if patch is not None:
            self.at_checkpoint = True
        return outcome

    async def _patch(self, step: Step) -> str | None:
        """The work tree's patch when the step may have changed files, else None."""
        if not step.mutated:
            return None
        paths = step.changed_paths if self.index_current else None
        with span(Part.PATCHES):
            self.last_patch = await asyncio.to_thread(
                self._patch_now, only=sorted(paths) if paths else None
            )
        self.index_current = True
        return self.last_patch

    def _patch_now(self, *, only: list[str] | None) -> str:
        """Stage the tree's changes; when the index came out as it was at this run's last
        patch (a command that changed no file), that patch still holds. Blocking."""
        self.workspace.stage(only=only)
        checksum = self.workspace.index_checksum()
        if checksum and checksum == self._patched_index:
            return self.last_patch
        patch = self.workspace.staged_patch(base_commit=self.base_commit)
        self._patched_index = checksum
        return patch

    async def _apply(self, writer: Writer, step: Step) -> StepOutcome:
        """Record what the step's effect means for the session (one handler per effect)."""
        effect = step.effect
        match effect:
            case None:
                return GO_ON
            case ProposePlan():
                return await self._propose_plan(writer, effect, step.transcript)
            case CompleteStep():
                return await self._complete_step(writer, effect)
            case MessageUser():
                return await self._message_user(writer, effect)
            case AskUser():
                return await self._ask_user(writer, effect)
            case Finish():
                return self._stage_finish(effect, step.transcript)
            case _:
                assert_never(effect)

    async def _propose_plan(
        self, writer: Writer, plan: ProposePlan, transcript: Transcript
    ) -> StepOutcome:
        _plan, result = await plans.propose(
            writer,
            session_id=self.session_id,
            steps=[StepDraft(title=t, description=d) for t, d in plan.steps],
            require_approval=self.require_approval,
        )
        if result.state is State.AWAITING_PLAN_APPROVAL:
            return WAIT
        transcript.phase = Phase.WORK
        approved = prompts.render("plan_approved", how=" automatically")
        transcript.messages.append({"role": "user", "content": approved})
        return GO_ON

    async def _complete_step(self, writer: Writer, done: CompleteStep) -> StepOutcome:
        await self._transition(
            writer,
            Event.PROGRESS,
            NewActivity(
                kind=ProgressUpdated(title=done.title, description=done.description),
                originator=Originator.AGENT,
                artifacts=[Artifact(change_set=self.change_set())],
            ),
        )
        return GO_ON

    async def _message_user(self, writer: Writer, message: MessageUser) -> StepOutcome:
        await self._transition(writer, Event.AGENT_MESSAGED, _agent_says(message.text))
        return GO_ON

    async def _ask_user(self, writer: Writer, question: AskUser) -> StepOutcome:
        await self._transition(writer, Event.AGENT_ASKED, _agent_says(question.question))
        return WAIT

    def _stage_finish(self, finish: Finish, transcript: Transcript) -> StepOutcome:
        transcript.finishing = Finishing(
            summary=finish.summary, commit_message=finish.commit_message
        )
        return StepOutcome(stop=True, finishing=True)

    async def complete(self, *, transcript: Transcript, delivered: Delivered) -> None:
        """COMPLETED with the final changeSet, plus the pull request (or a notice of why
        there is none) from the delivery that ran first."""
        finishing = transcript.finishing
        assert finishing is not None, "complete() follows a staged finish"
        change_set = self.change_set(message=finishing.commit_message)
        finished = [
            NewActivity(
                kind=SessionCompleted(),
                originator=Originator.AGENT,
                description=finishing.summary,
                artifacts=[Artifact(change_set=change_set)],
            )
        ]
        if delivered.notice:
            finished.insert(0, _agent_says(delivered.notice))
        outputs = [SessionOutput(change_set=change_set)]
        if delivered.pull_request is not None:
            outputs.insert(0, SessionOutput(pull_request=delivered.pull_request))
        transcript.finishing = None

        async def complete_session(writer: Writer) -> None:
            await self._transition(writer, Event.COMPLETED, *finished, outputs=outputs)
            await agent_state.save_transcript(
                writer, session_id=self.session_id, transcript=transcript
            )

        with contextlib.suppress(NotFound, FailedPrecondition):
            await self.db.transact(complete_session)
            moment(Moment.COMPLETED)

    async def fail(self, *, reason: str, transcript: Transcript) -> None:
        # A session paused or cancelled meanwhile keeps the transcript of its last step
        # (a resumed run must not start from a turn that was never recorded).
        async def fail_run(writer: Writer) -> None:
            await transitions.hold_working(writer, session_id=self.session_id)
            await agent_state.save_transcript(
                writer, session_id=self.session_id, transcript=transcript
            )
            await fail_session(writer, session_id=self.session_id, reason=reason)

        with contextlib.suppress(NotFound, FailedPrecondition):
            await self.db.transact(fail_run)

    async def _transition(
        self,
        writer: Writer,
        event: Event,
        *activities: NewActivity,
        outputs: list[SessionOutput] | None = None,
    ) -> None:
        await transitions.apply(
            writer,
            session_id=self.session_id,
            event=event,
            new_activities=activities,
            outputs=outputs,
        )

    def change_set(self, *, message: str = "") -> ChangeSet:
        """The session's changes so far, as a changeSet artifact or output."""
        return ChangeSet(
            source=self.source,
            git_patch=GitPatch(
                unidiff_patch=self.last_patch,
                base_commit_id=self.base_commit,
                suggested_commit_message=message,
            ),
        )


def _agent_says(text: str) -> NewActivity:
    return NewActivity(kind=AgentMessaged(agent_message=text), originator=Originator.AGENT)


async def fail_session(writer: Writer, *, session_id: str, reason: str) -> None:
    """FAILED with a ``sessionFailed`` activity; a session already ended is left alone."""
    with contextlib.suppress(NotFound, FailedPrecondition):
        await transitions.apply(
            writer,
            session_id=session_id,
            event=Event.FAILED,
            new_activities=[
                NewActivity(kind=SessionFailed(reason=reason), originator=Originator.SYSTEM)
            ],
        )
