"""``run_session``: what a runner executes for a job. Resumable and idempotent: it reads
everything from the database, rebuilds the workspace from the base commit plus the last
checkpoint, and continues the transcript from the last recorded step."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from openjules._types import AutomationMode, State
from openjules.engine import prompts
from openjules.engine.agent import Agent, AgentLimits
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.delivery import Publisher
from openjules.engine.forge.explain import explain_git_failure
from openjules.engine.forge.push import Author
from openjules.engine.git import GitError, HttpAuth, redact_url
from openjules.engine.journal import DatabaseJournal, fail_session
from openjules.engine.model import NOT_CONFIGURED, Model, model_config
from openjules.engine.runner import LocalRunner
from openjules.engine.sandbox import Sandbox, SandboxUnavailable, sandbox_from_settings
from openjules.engine.tools.base import Phase, ToolContext
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
from openjules.store import agent_state, sources, tables, transitions
from openjules.store.agent_state import Checkpoint, Transcript
from openjules.store.database import Database
from openjules.store.sources import Forge, SourceRecord
from openjules.store.transitions import Event

log = logging.getLogger("openjules.engine")
RUNNABLE = (State.QUEUED, State.PLANNING, State.IN_PROGRESS)
AGENTS_MD_MAX_CHARS = 20_000


@dataclass(frozen=True)
class SessionFacts:
    state: State
    prompt: str
    title: str
    auto_pr: bool
    source: SourceRecord | None
    branch: str
    require_approval: bool
    plan_approved: bool
    transcript: Transcript | None
    checkpoint: Checkpoint | None


class SessionWorker:
    def __init__(self, *, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.github = GitHubAccess.from_settings(settings)
        self.limits = AgentLimits(
            max_turns=settings.agent_max_turns,
            max_tokens=settings.agent_max_tokens,
            wall_seconds=settings.agent_wall_seconds,
            compact_above_chars=settings.agent_context_chars,
        )

    async def run_session(self, session_id: str) -> None:
        facts = await self._load(session_id)
        if facts is None or facts.state not in RUNNABLE:
            return  # deleted, waiting for a person, or ended: nothing to do
        config = model_config(self.settings)
        if config is None:
            await self._fail(session_id, NOT_CONFIGURED)
            return
        try:
            sandbox = sandbox_from_settings(self.settings)
            workspace, base = await asyncio.to_thread(self._prepare, session_id, facts)
            sandbox.prepare_workspace(workspace.tree)
            await self._run_setup(sandbox, workspace, facts)
        except (GitError, SandboxUnavailable, SetupFailed) as exc:
            await self._fail(session_id, str(exc))
            return
        model = Model(config)
        try:
            transcript = await self._start(session_id, facts, workspace, base)
            journal = DatabaseJournal(
                db=self.db,
                session_id=session_id,
                workspace=workspace,
                base_commit=base,
                source=facts.source.name if facts.source else "",
                require_approval=facts.require_approval,
                last_patch=facts.checkpoint.patch if facts.checkpoint else "",
                publisher=self._publisher(session_id, facts),
            )
            context = ToolContext(
                workspace=workspace,
                sandbox=sandbox,
                network=bool(facts.source and facts.source.network_allowed),
                phase=Phase(transcript.phase),
                bash_output_artifacts=self.settings.bash_output_artifacts,
            )
            await Agent(model=model, journal=journal, context=context, limits=self.limits).run(
                transcript
            )
        finally:
            await model.close()
            if await self._state(session_id) not in RUNNABLE:
                await asyncio.to_thread(workspace.remove)
        if facts.source is not None:
            # This session's outcome is recorded: check out a tree for the next session of
            # the source now, so that session does not wait for a full checkout.
            await asyncio.to_thread(self._prepare_spare, facts.source)

    async def _load(self, session_id: str) -> SessionFacts | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(tables.sessions).where(tables.sessions.c.id == session_id)
                )
            ).first()
            if row is None:
                return None
            source = await sources.get(conn, name=row.source_name) if row.source_name else None
            approved = (
                await conn.execute(
                    select(tables.plans.c.id).where(
                        tables.plans.c.session_id == session_id,
                        tables.plans.c.approve_time.is_not(None),
                    )
                )
            ).first() is not None
            return SessionFacts(
                state=State(row.state),
                prompt=row.prompt,
                title=row.title,
                auto_pr=row.automation_mode == AutomationMode.AUTO_CREATE_PR.value,
                source=source,
                branch=row.starting_branch or "",
                require_approval=row.require_plan_approval,
                plan_approved=approved,
                transcript=await agent_state.load_transcript(conn, session_id=session_id),
                checkpoint=await agent_state.load_checkpoint(conn, session_id=session_id),
            )

    async def _state(self, session_id: str) -> State | None:
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    select(tables.sessions.c.state).where(tables.sessions.c.id == session_id)
                )
            ).scalar()
        return State(value) if value else None

    def _prepare(self, session_id: str, facts: SessionFacts) -> tuple[Workspace, str]:
        """Blocking git work, run in a thread: mirror, clone, restore the checkpoint."""
        root = workspace_path(self.settings.data_dir, session_id)
        checkpoint = facts.checkpoint
        if facts.source is None:
            workspace, base = create_empty(root=root)
        else:
            mirror = mirror_path(
                self.settings.data_dir, owner=facts.source.owner, repo=facts.source.repo
            )
            try:
                sync_mirror(url=facts.source.url, mirror=mirror, auth=self._git_auth(facts.source))
            except GitError as exc:
                where = redact_url(facts.source.url)
                github = facts.source.forge is Forge.GITHUB
                raise GitError(
                    f"Could not fetch the source repository: "
                    f"{explain_git_failure(str(exc), where=where, github=github)}"
                ) from exc
            workspace, base = create_from_mirror(
                mirror=mirror,
                root=root,
                branch=facts.branch,
                base_commit=checkpoint.base_commit if checkpoint else None,
            )
        if checkpoint is not None:
            apply_patch(workspace, checkpoint.patch)
        return workspace, base

    def _git_auth(self, source: SourceRecord) -> HttpAuth | None:
        return self.github.git_auth(source.url) if source.forge is Forge.GITHUB else None

    def _publisher(self, session_id: str, facts: SessionFacts) -> Publisher | None:
        """Who delivers the session's changes on finish: only AUTO_CREATE_PR sessions with
        a source (a repoless session's files stay in its changeSet)."""
        if facts.source is None or not facts.auto_pr:
            return None
        return Publisher(
            db=self.db,
            session_id=session_id,
            session_title=facts.title,
            source=facts.source,
            base_branch=facts.branch,
            mirror=mirror_path(
                self.settings.data_dir, owner=facts.source.owner, repo=facts.source.repo
            ),
            scratch_path=self.settings.data_dir / "deliveries" / f"{session_id}.git",
            github=self.github,
            author=Author(name=self.settings.git_author_name, email=self.settings.git_author_email),
        )

    def _prepare_spare(self, source: SourceRecord) -> None:
        mirror = mirror_path(self.settings.data_dir, owner=source.owner, repo=source.repo)
        try:
            prepare_spare(mirror=mirror)
        except (GitError, OSError) as exc:  # only an optimisation: the next clone is slower
            log.warning("could not prepare a spare tree of %s: %s", source.name, exc)

    async def _run_setup(self, sandbox: Sandbox, workspace: Workspace, facts: SessionFacts) -> None:
        script = facts.source.setup_script if facts.source else None
        if not script:
            return
        result = await sandbox.run(
            script,
            workspace=workspace.tree,
            network=bool(facts.source and facts.source.network_allowed),
            ro_binds=workspace.sandbox_binds(),
        )
        if result.exit_code != 0:
            tail = result.output.strip().splitlines()[-5:]
            raise SetupFailed(
                f"The source's setup script failed (exit code {result.exit_code}): "
                + " / ".join(tail)
            )

    async def _start(
        self, session_id: str, facts: SessionFacts, workspace: Workspace, base: str
    ) -> Transcript:
        """Move QUEUED into PLANNING or IN_PROGRESS and bring the transcript up to date."""
        transcript = facts.transcript or Transcript(
            messages=[
                {"role": "system", "content": _system_prompt(workspace.tree)},
                {"role": "user", "content": facts.prompt},
            ],
            phase=Phase.PLANNING.value,
        )
        if facts.plan_approved and transcript.phase == Phase.PLANNING.value:
            transcript.phase = Phase.WORK.value
            transcript.messages.append(
                {"role": "user", "content": prompts.render("plan_approved", how="")}
            )
        async with self.db.write() as conn:
            if facts.state is State.QUEUED:
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
    pass


def _system_prompt(tree: Path) -> str:
    agents_md = tree / "AGENTS.md"
    instructions = ""
    # A symlink could point anywhere on the host; only a regular file in the tree counts.
    if agents_md.is_file() and not agents_md.is_symlink():
        text = agents_md.read_text(errors="replace")[:AGENTS_MD_MAX_CHARS]
        instructions = prompts.render("agents_md", agents_md=text)
    return prompts.render("system", repository_instructions=instructions)


def local_runner(settings: Settings, db: Database, *, workers: int) -> LocalRunner:
    """A LocalRunner that runs sessions with the agent."""
    worker = SessionWorker(settings=settings, db=db)
    return LocalRunner(
        db=db,
        work=worker.run_session,
        workers=workers,
        lease_seconds=settings.lease_seconds,
        give_up=worker.give_up,
    )
