"""``SessionWorker.run_session``: what a runner executes for a job. Resumable and
idempotent: it reads everything from the database, rebuilds the workspace from the base
commit plus the last checkpoint, and continues the transcript from the last recorded step.

A run goes: load the facts → take the session's sandbox (on a root server, a uid of its
own for this run) → prepare the workspace (and the source's setup script) → let the agent
work until the session waits, fails or finishes → on finish, deliver the changes
(AUTO_CREATE_PR) and complete → clean up.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TypeVar

from openai import DefaultAsyncHttpxClient

from openjules._types import State
from openjules.engine import prompts
from openjules.engine.agent import Agent, AgentLimits
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.delivery import Delivered, Publisher
from openjules.engine.forge.explain import explain_git_failure
from openjules.engine.forge.push import Author
from openjules.engine.git import GitError, HttpAuth, redact_url
from openjules.engine.journal import DatabaseJournal, fail_session
from openjules.engine.mirror_syncs import MirrorSyncs
from openjules.engine.model import (
    NOT_CONFIGURED,
    Model,
    ModelConfig,
    model_config,
    shared_http_client,
)
from openjules.engine.sandbox import Sandbox, SandboxUnavailable, session_sandbox
from openjules.engine.sandbox.disk import megabytes
from openjules.engine.tools.base import ToolContext
from openjules.engine.uninterrupted import to_the_end
from openjules.engine.workspace import (
    Workspace,
    apply_patch,
    create_empty,
    create_from_mirror,
    mirror_path,
    prepare_spare,
    sync_mirror,
    workspace_path,
)
from openjules.settings import Settings
from openjules.store import agent_state, runs, transitions
from openjules.store.agent_state import Checkpoint, Phase, Transcript
from openjules.store.database import Database
from openjules.store.jobs import RUNNABLE
from openjules.store.runs import RunFacts
from openjules.store.sources import Forge, SourceRecord
from openjules.store.transitions import Event
from openjules.timing import Moment, ObserverFactory, Part, moment, observing, span

log = logging.getLogger("openjules.engine")
T = TypeVar("T")
AGENTS_MD_MAX_CHARS = 20_000


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
        self._model_http: DefaultAsyncHttpxClient | None = None
        self._mirror_syncs = MirrorSyncs()
        # Sandbox commands of all this engine's sessions take turns for these.
        self._command_slots = asyncio.Semaphore(settings.commands_at_once())

    async def close(self) -> None:
        """Close what the runs shared (the model calls' connection pool)."""
        http, self._model_http = self._model_http, None
        if http is not None:
            await http.aclose()

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
            workspace, base = await self._workspace(session_id, facts, sandbox)
        except GitError as exc:
            await self._fail(session_id, str(exc))
            return
        try:
            await self._check_size(sandbox, workspace)
            await self._run_setup(sandbox, workspace, facts)
            await self._work(
                session_id, facts, sandbox=sandbox, workspace=workspace, base=base, config=config
            )
        except SetupFailed as exc:
            await self._fail(session_id, str(exc))
        except BaseException:
            # Stopped mid-work (deleted, the server stopping) or a bug: tidy up only.
            await to_the_end(self._clean_up(session_id, workspace))
            raise
        await to_the_end(self._tidy(session_id, workspace, facts.source))

    async def _tidy(
        self, session_id: str, workspace: Workspace, source: SourceRecord | None
    ) -> None:
        """After a run that ended well: remove the workspace, and check out a tree for the
        source's next session now, so that session does not wait for a full checkout."""
        await self._clean_up(session_id, workspace)
        if source is not None:
            with span(Part.SPARE):
                await asyncio.to_thread(self._prepare_spare, source)

    async def _workspace(
        self, session_id: str, facts: RunFacts, sandbox: Sandbox
    ) -> tuple[Workspace, str]:
        with span(Part.WORKSPACE):
            try:
                if facts.source is not None:
                    await self._sync(facts.source)
                workspace, base = await to_the_end(
                    asyncio.to_thread(self._prepare, session_id, facts)
                )
            except asyncio.CancelledError:
                # Stopped mid-checkout (e.g. the session was deleted): the checkout has
                # ended by now; remove what it made instead of leaving it on disk.
                root = workspace_path(self.settings.data_dir, session_id)
                await to_the_end(asyncio.to_thread(Workspace(root).remove))
                raise
        with span(Part.SANDBOX_OWNERSHIP):
            # A walk over every file (chown): off the event loop, which serves the API and
            # every other session meanwhile; stopped meanwhile, the tree is removed.
            try:
                await to_the_end(asyncio.to_thread(sandbox.prepare_workspace, workspace.tree))
            except asyncio.CancelledError:
                await to_the_end(asyncio.to_thread(workspace.remove))
                raise
        return workspace, base

    async def _work(
        self,
        session_id: str,
        facts: RunFacts,
        *,
        sandbox: Sandbox,
        workspace: Workspace,
        base: str,
        config: ModelConfig,
    ) -> None:
        """The agent's turns, then the finish step when the agent (or a run that died
        after staging it) finished."""
        if self._model_http is None:
            self._model_http = shared_http_client()
        model = Model(config, http_client=self._model_http)
        try:
            transcript = await self._start(session_id, facts, workspace, base)
            journal = DatabaseJournal(
                db=self.db,
                session_id=session_id,
                workspace=workspace,
                base_commit=base,
                source=facts.source.name if facts.source else "",
                require_approval=facts.session.require_plan_approval,
                last_patch=facts.checkpoint.patch if facts.checkpoint else "",
            )
            finishing = transcript.finishing is not None
            if not finishing:
                context = ToolContext(
                    workspace=workspace,
                    sandbox=sandbox,
                    network=bool(facts.source and facts.source.network_allowed),
                    phase=transcript.phase,
                    bash_output_artifacts=self.settings.bash_output_artifacts,
                )
                agent = Agent(model=model, journal=journal, context=context, limits=self.limits)
                finishing = await agent.run(transcript)
            if finishing:
                await self._finish(session_id, facts, journal=journal, transcript=transcript)
        finally:
            await model.close()

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
                await asyncio.to_thread(workspace.remove)

    async def _sync(self, source: SourceRecord) -> None:
        """Bring the source's mirror up to date, sharing the fetch with runs starting now."""
        mirror = self._mirror(source)
        with span(Part.MIRROR_SYNC):
            try:
                await self._mirror_syncs.sync(mirror, lambda: self._sync_mirror(source, mirror))
            except GitError as exc:
                raise GitError(str(exc)) from None  # one exception object per run

    def _prepare(self, session_id: str, facts: RunFacts) -> tuple[Workspace, str]:
        """Blocking git work, run in a thread once the mirror is synced: clone, restore
        the checkpoint."""
        root = workspace_path(self.settings.data_dir, session_id)
        checkpoint = facts.checkpoint
        if facts.source is None:
            workspace, base = create_empty(root=root)
        else:
            mirror = self._mirror(facts.source)
            with span(Part.CHECKOUT):
                workspace, base = create_from_mirror(
                    mirror=mirror,
                    root=root,
                    branch=facts.branch,
                    base_commit=checkpoint.base_commit if checkpoint else None,
                )
        if checkpoint is not None:
            apply_patch(workspace, checkpoint.patch)
        return workspace, base

    def _sync_mirror(self, source: SourceRecord, mirror: Path) -> None:
        try:
            sync_mirror(url=source.url, mirror=mirror, auth=self._git_auth(source))
        except GitError as exc:
            where = redact_url(source.url)
            github = source.forge is Forge.GITHUB
            raise GitError(
                f"Could not fetch the source repository: "
                f"{explain_git_failure(str(exc), where=where, github=github)}"
            ) from exc

    def _mirror(self, source: SourceRecord) -> Path:
        return mirror_path(self.settings.data_dir, owner=source.owner, repo=source.repo)

    def _git_auth(self, source: SourceRecord) -> HttpAuth | None:
        return self.github.git_auth(source.url) if source.forge is Forge.GITHUB else None

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
            mirror=self._mirror(facts.source),
            scratch_path=self.settings.data_dir / "deliveries" / f"{session_id}.git",
            github=self.github,
            author=Author(name=self.settings.git_author_name, email=self.settings.git_author_email),
        )

    def _prepare_spare(self, source: SourceRecord) -> None:
        try:
            prepare_spare(mirror=self._mirror(source))
        except (GitError, OSError) as exc:  # only an optimisation: the next clone is slower
            log.warning("could not prepare a spare tree of %s: %s", source.name, exc)

    async def _check_size(self, sandbox: Sandbox, workspace: Workspace) -> None:
        """A tree over its limit as the run starts (its checkpoint is that large, or the
        limit was lowered) leaves the agent no room to work."""
        limit = sandbox.limits.workspace_bytes
        used = await asyncio.to_thread(sandbox.workspace_used, workspace.tree)
        if used > limit:
            raise SetupFailed(
                f"The session's workspace is {megabytes(used)} MB, over its limit of "
                f"{megabytes(limit)} MB (OPENJULES_WORKSPACE_MAX_MB), so the session cannot "
                "go on."
            )

    async def _run_setup(self, sandbox: Sandbox, workspace: Workspace, facts: RunFacts) -> None:
        script = facts.source.setup_script if facts.source else None
        if not script:
            return
        result = await sandbox.run(
            script,
            workspace=workspace.tree,
            network=bool(facts.source and facts.source.network_allowed),
            ro_binds=workspace.sandbox_binds(),
        )
        if result.workspace_over is not None:
            over = result.workspace_over
            raise SetupFailed(
                "The source's setup script made the workspace larger than its limit of "
                f"{megabytes(over.limit_bytes)} MB (now {megabytes(over.used_bytes)} MB; "
                "OPENJULES_WORKSPACE_MAX_MB)."
            )
        if result.exit_code != 0:
            tail = result.output.strip().splitlines()[-5:]
            raise SetupFailed(
                f"The source's setup script failed (exit code {result.exit_code}): "
                + " / ".join(tail)
            )

    async def _start(
        self, session_id: str, facts: RunFacts, workspace: Workspace, base: str
    ) -> Transcript:
        """Move QUEUED into PLANNING or IN_PROGRESS and bring the transcript up to date."""
        transcript = facts.transcript or Transcript(
            messages=[
                {"role": "system", "content": _system_prompt(workspace.tree)},
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
        async with self.db.write() as conn:
            # Paused or cancelled since the facts were read: the runner lets the job go.
            await transitions.hold_working(conn, session_id=session_id)
            if woken:
                event = Event.START_WORK if facts.plan_approved else Event.START_PLANNING
                await transitions.apply(conn, session_id=session_id, event=event)
            if facts.checkpoint is None:
                await agent_state.save_checkpoint(
                    conn, session_id=session_id, checkpoint=Checkpoint(base_commit=base, patch="")
                )
            await agent_state.save_transcript(conn, session_id=session_id, transcript=transcript)
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
        async with self.db.write() as conn:
            await fail_session(conn, session_id=session_id, reason=reason)


class SetupFailed(RuntimeError):
    """The run cannot start: the message is the session's failure reason."""


def _system_prompt(tree: Path) -> str:
    agents_md = tree / "AGENTS.md"
    instructions = ""
    # A symlink could point anywhere on the host; only a regular file in the tree counts.
    if agents_md.is_file() and not agents_md.is_symlink():
        text = agents_md.read_text(errors="replace")[:AGENTS_MD_MAX_CHARS]
        instructions = prompts.render("agents_md", agents_md=text)
    return prompts.render("system", repository_instructions=instructions)
