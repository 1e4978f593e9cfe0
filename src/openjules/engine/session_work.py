"""``SessionWorker.run_session``: what a runner executes for a job. Resumable and
idempotent: it reads everything from the database, rebuilds the workspace from the base
commit plus the last checkpoint, and continues the transcript from the last recorded step.

A run goes: load the facts → take the session's sandbox (on a root server, a uid of its
own for this run) → sync the mirror and find the base commit → prepare the workspace (and
run the source's setup script) while the agent asks the model for its first turn
(``preparation``) → let the agent work until the session waits, fails or finishes → on
finish, deliver the changes (AUTO_CREATE_PR) and complete → keep the workspace for a
person's answer (``kept_workspaces``) or remove it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from openjules._types import State
from openjules.engine import kept_workspaces, prompts
from openjules.engine.agent import Agent, AgentLimits
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.delivery import Delivered, Publisher
from openjules.engine.forge.push import Author
from openjules.engine.git import GitError
from openjules.engine.journal import DatabaseJournal, fail_session
from openjules.engine.model import (
    NOT_CONFIGURED,
    Model,
    ModelConfig,
    model_config,
    shared_http_client,
)
from openjules.engine.model_http import ModelHttp
from openjules.engine.preparation import Preparation, SetupFailed, Start, system_prompt
from openjules.engine.sandbox import Sandbox, SandboxUnavailable, session_sandbox
from openjules.engine.tools.base import ToolContext
from openjules.engine.tree_work import TreeWork
from openjules.engine.uninterrupted import to_the_end
from openjules.engine.workspace import Workspace, prepare_spare
from openjules.settings import Settings
from openjules.store import agent_state, runs, transitions
from openjules.store.agent_state import Checkpoint, Phase, Transcript
from openjules.store.database import Database
from openjules.store.jobs import RUNNABLE
from openjules.store.runs import RunFacts
from openjules.store.sources import SourceRecord
from openjules.store.transitions import Event
from openjules.store.writer import Writer
from openjules.timing import Moment, ObserverFactory, Part, moment, observing, span

log = logging.getLogger("openjules.engine")
# A run that ends with its session in one of these keeps the workspace for the next run.
WAITING_FOR_A_PERSON = frozenset({State.AWAITING_PLAN_APPROVAL, State.AWAITING_USER_FEEDBACK})


class SessionWorker:
    def __init__(
        self, *, settings: Settings, db: Database, observe: ObserverFactory | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.observe = observe
        self.github = GitHubAccess.from_settings(settings)
        self.limits = AgentLimits(
            max_turns=settings.agent_max_turns,
            max_tokens=settings.agent_max_tokens,
            wall_seconds=settings.agent_wall_seconds,
            compact_above_chars=settings.agent_context_chars,
        )
        # Built on first use, in the event loop the sessions run in.
        self._model_http: ModelHttp | None = None
        self.trees = TreeWork()
        self.preparation = Preparation(
            data_dir=settings.data_dir, github=self.github, trees=self.trees
        )
        # Sandbox commands of all this engine's sessions take turns for these.
        self._command_slots = asyncio.Semaphore(settings.commands_at_once())

    async def close(self) -> None:
        """Close what the runs shared (the model calls' connection pool)."""
        http, self._model_http = self._model_http, None
        if http is not None:
            await http.aclose()
        self.trees.close()

    async def run_session(self, session_id: str) -> None:
        with observing(self.observe(session_id) if self.observe else None):
            moment(Moment.STARTED)
            try:
                await self._run(session_id)
            finally:
                moment(Moment.ENDED)

    async def _run(self, session_id: str) -> None:
        async with self.db.read() as conn:
            facts = await runs.load(conn, session_id=session_id)
        if facts is None or facts.session.state not in RUNNABLE:
            return  # deleted, waiting for a person, or ended: nothing to do
        config = model_config(self.settings)
        if config is None:
            await self._fail(session_id, NOT_CONFIGURED)
            return
        try:
            async with session_sandbox(self.settings, slots=self._command_slots) as sandbox:
                await self._run_in(session_id, facts, sandbox=sandbox, config=config)
        except SandboxUnavailable as exc:
            await self._fail(session_id, str(exc))

    async def _run_in(
        self, session_id: str, facts: RunFacts, *, sandbox: Sandbox, config: ModelConfig
    ) -> None:
        try:
            start = await self.preparation.start(session_id, facts)
        except GitError as exc:
            await self._fail(session_id, str(exc))
            return
        workspace = start.workspace
        preparing = asyncio.create_task(
            self.preparation.prepare(facts, start=start, sandbox=sandbox)
        )
        try:
            journal = await self._work(
                session_id,
                facts,
                sandbox=sandbox,
                start=start,
                config=config,
                ready=lambda: asyncio.shield(preparing),
            )
        except SetupFailed as exc:
            await to_the_end(_settled(preparing))
            await self._fail(session_id, str(exc))
            await to_the_end(self._clean_up(session_id, workspace))
            return
        except BaseException:
            # Stopped mid-work (deleted, the server stopping) or a bug: tidy up only.
            preparing.cancel()
            await to_the_end(_settled(preparing))
            await to_the_end(self._clean_up(session_id, workspace))
            raise
        await to_the_end(
            self._tidy(session_id, facts.source, preparing, journal=journal, sandbox=sandbox)
        )

    async def _tidy(
        self,
        session_id: str,
        source: SourceRecord | None,
        preparing: asyncio.Task[None],
        *,
        journal: DatabaseJournal,
        sandbox: Sandbox,
    ) -> None:
        """After a run that ended well: keep the workspace for the person's answer, or
        remove it; and check out a tree for the source's next session now, so that session
        does not wait for a full checkout."""
        # The agent may have got here without the tree (a plan, a question): wait for it
        # before keeping or removing it. If preparing it failed, nothing needed it; the
        # next run prepares it again.
        await _settled(preparing)
        ready = not preparing.cancelled() and preparing.exception() is None
        workspace = journal.workspace
        async with self.db.read() as conn:
            state = await runs.state_of(conn, session_id=session_id)
        workspaces = workspace.root.parent
        if ready and state in WAITING_FOR_A_PERSON and journal.at_checkpoint:
            checkpoint = Checkpoint(base_commit=journal.base_commit, patch=journal.last_patch)
            with span(Part.CLEANUP):
                await self.trees.run(
                    kept_workspaces.keep,
                    workspace,
                    checkpoint=checkpoint,
                    index_current=journal.index_current,
                    measured=sandbox.last_measure(workspace.tree),
                )
        elif state not in RUNNABLE:
            with span(Part.CLEANUP):
                await self.trees.run(workspace.remove)
        with span(Part.CLEANUP):
            await self.trees.run(kept_workspaces.trim, workspaces)
        if source is not None:
            with span(Part.SPARE):
                await self.trees.run(self._prepare_spare, source)

    async def _work(
        self,
        session_id: str,
        facts: RunFacts,
        *,
        sandbox: Sandbox,
        start: Start,
        config: ModelConfig,
        ready: Callable[[], Awaitable[None]],
    ) -> DatabaseJournal:
        """The agent's turns, then the finish step when the agent (or a run that died
        after staging it) finished. Tools that use the tree wait for ``ready``."""
        if self._model_http is None:
            self._model_http = shared_http_client()
        model = Model(config, http_client=self._model_http)
        try:
            transcript = await self._start(session_id, facts, start)
            journal = DatabaseJournal(
                db=self.db,
                session_id=session_id,
                workspace=start.workspace,
                base_commit=start.base_commit,
                source=facts.source.name if facts.source else "",
                require_approval=facts.session.require_plan_approval,
                last_patch=facts.checkpoint.patch if facts.checkpoint else "",
                index_current=start.index_current,
            )
            finishing = transcript.finishing is not None
            if not finishing:
                context = ToolContext(
                    workspace=start.workspace,
                    sandbox=sandbox,
                    network=bool(facts.source and facts.source.network_allowed),
                    phase=transcript.phase,
                    bash_output_artifacts=self.settings.bash_output_artifacts,
                )
                agent = Agent(
                    model=model,
                    journal=journal,
                    context=context,
                    limits=self.limits,
                    workspace_ready=ready,
                )
                finishing = await agent.run(transcript)
            if finishing:
                await self._finish(session_id, facts, journal=journal, transcript=transcript)
        finally:
            await model.close()
        return journal

    async def _finish(
        self, session_id: str, facts: RunFacts, *, journal: DatabaseJournal, transcript: Transcript
    ) -> None:
        """Deliver, then complete: the pull request must be among the outputs the moment
        clients see COMPLETED."""
        finishing = transcript.finishing
        assert finishing is not None
        delivered = Delivered()
        publisher = self._publisher(session_id, facts)
        if publisher is not None:
            with span(Part.DELIVERY):
                delivered = await publisher.publish(
                    base_commit=journal.base_commit,
                    patch=journal.last_patch,
                    message=finishing.commit_message,
                    summary=finishing.summary,
                )
        await journal.complete(transcript=transcript, delivered=delivered)

    async def _clean_up(self, session_id: str, workspace: Workspace) -> None:
        """Remove the workspace once the session holds no more work (it is rebuilt from
        the checkpoint when a person wakes the session)."""
        async with self.db.read() as conn:
            state = await runs.state_of(conn, session_id=session_id)
        if state not in RUNNABLE:
            with span(Part.CLEANUP):
                await self.trees.run(workspace.remove)

    def _publisher(self, session_id: str, facts: RunFacts) -> Publisher | None:
        """Who delivers the session's changes on finish: only AUTO_CREATE_PR sessions with
        a source (a repoless session's files stay in its changeSet)."""
        if facts.source is None or not facts.session.auto_pr:
            return None
        return Publisher(
            db=self.db,
            session_id=session_id,
            session_title=facts.session.title,
            source=facts.source,
            base_branch=facts.branch,
            mirror=self.preparation.mirror(facts.source),
            scratch_path=self.settings.data_dir / "deliveries" / f"{session_id}.git",
            github=self.github,
            author=Author(name=self.settings.git_author_name, email=self.settings.git_author_email),
        )

    def _prepare_spare(self, source: SourceRecord) -> None:
        try:
            prepare_spare(mirror=self.preparation.mirror(source))
        except (GitError, OSError) as exc:  # only an optimisation: the next clone is slower
            log.warning("could not prepare a spare tree of %s: %s", source.name, exc)

    async def _start(self, session_id: str, facts: RunFacts, start: Start) -> Transcript:
        """Move QUEUED into PLANNING or IN_PROGRESS and bring the transcript up to date."""
        base = start.base_commit
        transcript = facts.transcript
        if transcript is None:
            transcript = Transcript(
                messages=[
                    {"role": "system", "content": system_prompt(start.agents_md)},
                    {"role": "user", "content": facts.session.prompt},
                ],
                phase=Phase.PLANNING,
            )
        if facts.plan_approved and transcript.phase is Phase.PLANNING:
            transcript.phase = Phase.WORK
            transcript.messages.append(
                {"role": "user", "content": prompts.render("plan_approved", how="")}
            )
        woken = facts.session.state is State.QUEUED
        if woken:
            # A person woke the session: their message comes before any finish left staged.
            transcript.finishing = None

        async def begin(writer: Writer) -> None:
            # Paused or cancelled since the facts were read: the runner lets the job go.
            await transitions.hold_working(writer, session_id=session_id)
            if woken:
                event = Event.START_WORK if facts.plan_approved else Event.START_PLANNING
                await transitions.apply(writer, session_id=session_id, event=event)
            if facts.checkpoint is None:
                checkpoint = Checkpoint(base_commit=base, patch="")
                await agent_state.save_checkpoint(
                    writer, session_id=session_id, checkpoint=checkpoint
                )
            await agent_state.save_transcript(writer, session_id=session_id, transcript=transcript)

        await self.db.transact(begin)
        return transcript

    async def give_up(self, session_id: str, error: str) -> None:
        """The runner's last resort when run_session keeps raising (a bug, not bad input)."""
        await self._fail(
            session_id,
            f"openjules hit an internal error while running this session ({error}); "
            "the server log has the details.",
        )

    async def _fail(self, session_id: str, reason: str) -> None:
        log.warning("session %s failed: %s", session_id, reason)
        await self.db.transact(
            lambda writer: fail_session(writer, session_id=session_id, reason=reason)
        )


async def _settled(task: asyncio.Task[None]) -> None:
    """Wait for ``task`` to end, whatever it raised (the caller has its own error)."""
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.info("preparing a workspace failed: %s", task.exception())
