"""A run's workspace, prepared while the model is asked for the run's first turn.

Checking out the tree, handing it to the sandbox uid and running the source's setup script
take a tenth of a second on a 10,000-file repository, and more on larger ones, and the
model's first answer takes seconds. Neither needs the other: the first turn needs only the
transcript (a new session's system prompt reads AGENTS.md from the base commit in the
mirror), so the run starts both at once, and a tool that uses the tree waits for it
(``Tool.uses_workspace``). A plan proposed in the first turn reaches the user as soon as
the model has written it.

What comes first, before anything is started: the mirror's sync and the base commit
(a wrong branch fails the session at once), and a kept workspace (``kept_workspaces``),
which needs neither.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from openjules.engine import kept_workspaces, prompts
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.explain import explain_git_failure
from openjules.engine.git import (
    GIT_TIMEOUT_S,
    SAFE_CONFIG,
    GitError,
    HttpAuth,
    git_env,
    redact_url,
    run_git,
)
from openjules.engine.kept_workspaces import Kept
from openjules.engine.mirror_syncs import MirrorSyncs
from openjules.engine.sandbox import Sandbox
from openjules.engine.sandbox.disk import megabytes
from openjules.engine.tree_work import TreeWork
from openjules.engine.uninterrupted import to_the_end
from openjules.engine.workspace import (
    EMPTY_TREE,
    Workspace,
    apply_patch,
    create_empty,
    create_from_mirror,
    mirror_path,
    sync_mirror,
    workspace_path,
)
from openjules.store.runs import RunFacts
from openjules.store.sources import Forge, SourceRecord
from openjules.timing import Part, span

log = logging.getLogger("openjules.engine")
AGENTS_MD = "AGENTS.md"
AGENTS_MD_MAX_CHARS = 20_000


class SetupFailed(RuntimeError):
    """The run cannot go on: the message is the session's failure reason."""


@dataclass(frozen=True)
class Start:
    """What a run knows before its workspace is ready."""

    workspace: Workspace  # where the tree is (or will be)
    base_commit: str
    # A new session's AGENTS.md at the base commit (None: none, or not a new session).
    agents_md: str | None
    # The workspace kept by the session's last run (None: it is prepared afresh).
    kept: Kept | None
    # Whether the workspace's private index will hold every change of the tree.
    index_current: bool


class Preparation:
    """Mirrors and workspaces of one engine's runs."""

    def __init__(self, *, data_dir: Path, github: GitHubAccess, trees: TreeWork) -> None:
        self.data_dir = data_dir
        self.github = github
        self.trees = trees
        self._syncs = MirrorSyncs()

    def mirror(self, source: SourceRecord) -> Path:
        return mirror_path(self.data_dir, owner=source.owner, repo=source.repo)

    async def start(self, session_id: str, facts: RunFacts) -> Start:
        """Adopt the kept workspace, or sync the mirror and find the base commit; and for a
        new session, read its AGENTS.md. ``GitError`` (with the session's failure reason)
        when the source cannot be read."""
        root = workspace_path(self.data_dir, session_id)
        checkpoint = facts.checkpoint
        source = facts.source
        kept = await asyncio.to_thread(kept_workspaces.take, root, checkpoint=checkpoint)
        if checkpoint is None or facts.transcript is None:
            kept = None  # not a later run of the session: rebuilt (not expected to happen)
        agents_md: str | None = None
        if source is None:
            workspace, base = Workspace(root), EMPTY_TREE
        else:
            mirror = self.mirror(source)
            workspace = Workspace(root, borrowed_objects=(mirror / "objects").resolve())
            if kept is None:
                with span(Part.WORKSPACE):
                    await self._sync(source, mirror)
                # One thread hop for both lookups: in a burst of runs, each hop waits.
                base, agents_md = await asyncio.to_thread(
                    _base_and_instructions, mirror, facts, read=facts.transcript is None
                )
        if kept is not None and checkpoint is not None:
            base = checkpoint.base_commit
            return Start(workspace, base, agents_md, kept=kept, index_current=kept.index_current)
        restored = checkpoint is not None and bool(checkpoint.patch.strip())
        setup = bool(source and source.setup_script)
        return Start(workspace, base, agents_md, kept=None, index_current=not (restored or setup))

    async def _sync(self, source: SourceRecord, mirror: Path) -> None:
        with span(Part.MIRROR_SYNC):
            try:
                await self._syncs.sync(mirror, lambda: self._sync_mirror(source, mirror))
            except GitError as exc:
                raise GitError(str(exc)) from None  # one exception object per run

    async def prepare(self, facts: RunFacts, *, start: Start, sandbox: Sandbox) -> None:
        """Make ``start.workspace`` ready for the sandbox's commands: check it out (unless
        kept), hand it to the sandbox uid, check its size, run the setup script (once per
        tree). Raises ``SetupFailed`` with the session's failure reason. Cancelled, it
        removes what it made."""
        try:
            await self._prepare(facts, start=start, sandbox=sandbox)
        except GitError as exc:
            raise SetupFailed(str(exc)) from exc

    async def _prepare(self, facts: RunFacts, *, start: Start, sandbox: Sandbox) -> None:
        workspace = start.workspace
        if start.kept is None:
            with span(Part.WORKSPACE):
                try:
                    await to_the_end(
                        self.trees.run(self._check_out, facts, workspace, start.base_commit)
                    )
                except asyncio.CancelledError:
                    # The checkout has ended by now: remove what it made.
                    await to_the_end(self.trees.run(workspace.remove))
                    raise
        with span(Part.SANDBOX_OWNERSHIP):
            # A walk over every file (chown): off the event loop, which serves the API and
            # every other session meanwhile; stopped meanwhile, the tree is removed.
            try:
                kept = start.kept
                await to_the_end(
                    self.trees.run(
                        sandbox.prepare_workspace,
                        workspace.tree,
                        owned_by=kept.owner if kept else None,
                        measured=kept.measured if kept else None,
                    )
                )
            except asyncio.CancelledError:
                await to_the_end(self.trees.run(workspace.remove))
                raise
        if start.kept is None:
            # A kept tree was within its limit when its run ended; its commands and file
            # tools still see the limit's room.
            await self._check_size(sandbox, workspace)
            await self._run_setup(sandbox, workspace, facts)

    def _check_out(self, facts: RunFacts, workspace: Workspace, base: str) -> None:
        """Blocking git work, run in a thread once the mirror is synced: clone, restore
        the checkpoint."""
        checkpoint = facts.checkpoint
        if facts.source is None:
            create_empty(root=workspace.root)
        else:
            with span(Part.CHECKOUT):
                create_from_mirror(
                    mirror=self.mirror(facts.source),
                    root=workspace.root,
                    branch=facts.branch,
                    base_commit=base,
                )
        if checkpoint is not None:
            apply_patch(workspace, checkpoint.patch)

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

    def _git_auth(self, source: SourceRecord) -> HttpAuth | None:
        return self.github.git_auth(source.url) if source.forge is Forge.GITHUB else None

    async def _check_size(self, sandbox: Sandbox, workspace: Workspace) -> None:
        """A tree over its limit as the run starts (its checkpoint is that large, or the
        limit was lowered) leaves the agent no room to work."""
        limit = sandbox.limits.workspace_bytes
        used = await self.trees.run(sandbox.workspace_used, workspace.tree)
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


def system_prompt(agents_md: str | None) -> str:
    instructions = ""
    if agents_md:
        instructions = prompts.render("agents_md", agents_md=agents_md[:AGENTS_MD_MAX_CHARS])
    return prompts.render("system", repository_instructions=instructions)


def _base_and_instructions(mirror: Path, facts: RunFacts, *, read: bool) -> tuple[str, str | None]:
    """The run's base commit (the checkpoint's, else the branch's head) and, if ``read``,
    the text of AGENTS.md there."""
    if facts.checkpoint is not None:
        base = facts.checkpoint.base_commit
    else:
        ref = f"refs/heads/{facts.branch}^{{commit}}"
        base = run_git(["rev-parse", ref], cwd=mirror).strip()
    return base, _regular_file_text(mirror, base, AGENTS_MD) if read else None


def _regular_file_text(repository: Path, commit: str, path: str) -> str | None:
    """A regular file's text at ``commit`` of a bare ``repository`` (None: no such file, or
    not a regular file)."""
    listing = run_git(["ls-tree", "-z", commit, "--", path], cwd=repository)
    entry = listing.split("\0")[0]
    meta, _, name = entry.partition("\t")
    fields = meta.split()
    if name != path or len(fields) != 3 or fields[0] not in ("100644", "100755"):
        return None
    blob = subprocess.run(
        ["git", *SAFE_CONFIG, "cat-file", "blob", fields[2]],
        cwd=repository,
        env=git_env(),
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if blob.returncode != 0:
        return None
    # Bytes, decoded leniently: an instructions file in another encoding is still read.
    return blob.stdout.decode(errors="replace")
