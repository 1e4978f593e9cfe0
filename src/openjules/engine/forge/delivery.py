"""Delivery of a finished session (``automationMode: AUTO_CREATE_PR``): commit the final
patch on the session's branch, push it, and for GitHub sources open a pull request.

Runs host-side with the token; the agent has finished and its sandbox plays no part.
Nothing here fails the session: when the forge refuses, the session still completes with
its changeSet, and ``Delivered.notice`` explains (in an ``agentMessaged`` activity) what
happened and what the user can do.

Re-running is safe. What was pushed is recorded (``store.pull_request_deliveries``)
before and after each push, so a worker that crashed mid-delivery, or a follow-up run of
the same session, builds on the branch as this session left it, and reuses the pull
request it opened.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from openjules._types import PullRequest
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.explain import explain_git_failure
from openjules.engine.forge.github import GitHubClient, GitHubError
from openjules.engine.forge.push import Author, Scratch
from openjules.engine.git import GitError, HttpAuth, redact_url
from openjules.store import pull_request_deliveries as deliveries
from openjules.store.database import Database
from openjules.store.pull_request_deliveries import DeliveryRecord
from openjules.store.sources import Forge, SourceRecord

log = logging.getLogger("openjules.forge")
BRANCH_SLUG_MAX = 40
KEPT_IN_CHANGESET = (
    "The changes are in this session's changeSet output, a git patch you can apply with "
    "`git apply`."
)


def branch_name(*, title: str, session_id: str) -> str:
    """``<slug>-<sessionId>``, the form Jules uses (e.g. ``fix-login-bug-1234…``)."""
    # Accents folded to ASCII ("Überprüfe" → "uberprufe"); other scripts drop out.
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:BRANCH_SLUG_MAX]
    slug = slug.strip("-")
    return f"{slug or 'openjules'}-{session_id}"


@dataclass(frozen=True)
class Delivered:
    pull_request: PullRequest | None = None
    # What the user should be told (an agentMessaged activity); "" when nothing.
    notice: str = ""


class ForeignCommits(GitError):
    """The session's branch holds commits this session did not push."""


@dataclass(frozen=True)
class _Prepared:
    commit: str
    expected_tip: str | None
    needs_push: bool


@dataclass
class Publisher:
    db: Database
    session_id: str
    session_title: str
    source: SourceRecord
    base_branch: str
    mirror: Path
    scratch_path: Path
    github: GitHubAccess
    author: Author

    @property
    def _is_github(self) -> bool:
        return self.source.forge is Forge.GITHUB

    @property
    def _where(self) -> str:
        return redact_url(self.source.url)

    async def publish(
        self, *, base_commit: str, patch: str, message: str, summary: str
    ) -> Delivered:
        async with self.db.read() as conn:
            record = await deliveries.load(conn, session_id=self.session_id)
        record = record or DeliveryRecord(
            branch=branch_name(title=self.session_title, session_id=self.session_id)
        )
        if not patch.strip():
            if record.pushed_commit:
                return Delivered(pull_request=record.pull_request)
            return Delivered(notice="No files changed, so there was nothing to push.")
        if self._is_github and not self.github.token:
            return Delivered(
                notice="No pull request was opened: this openjules server has no GitHub "
                "token (OPENJULES_GITHUB_TOKEN), so it cannot push to GitHub. " + KEPT_IN_CHANGESET
            )
        message = message.strip() or self.session_title
        pushed = await self._push(record, base_commit=base_commit, patch=patch, message=message)
        if isinstance(pushed, Delivered):
            return pushed  # the push failed; the notice says why
        record, prepared = pushed
        if not self._is_github:
            if not prepared.needs_push:
                return Delivered()
            return Delivered(
                notice=f"I pushed the changes to branch `{record.branch}` of {self._where} "
                f"(commit {prepared.commit[:12]}). It is not a GitHub repository, so no pull "
                "request was opened; open one from that branch with your forge's tools."
            )
        return await self._pull_request(record, message=message, summary=summary)

    async def _push(
        self, record: DeliveryRecord, *, base_commit: str, patch: str, message: str
    ) -> tuple[DeliveryRecord, _Prepared] | Delivered:
        """Commit the patch on the session's branch and push it (unless the branch already
        holds it); what was pushed is recorded before and after the push."""
        auth = self.github.git_auth(self.source.url) if self._is_github else None
        scratch = Scratch(self.scratch_path)
        try:
            await asyncio.to_thread(scratch.init, mirror=self.mirror)
            prepared = await asyncio.to_thread(
                self._prepare, scratch, record, base_commit, patch, message, auth
            )
            if prepared.needs_push:
                record = replace(record, pending_commit=prepared.commit)
                await self._save(record)
                await asyncio.to_thread(
                    scratch.push,
                    url=self.source.url,
                    commit=prepared.commit,
                    branch=record.branch,
                    expected=prepared.expected_tip,
                    auth=auth,
                )
                record = replace(record, pushed_commit=prepared.commit, pending_commit=None)
                await self._save(record)
                log.info(
                    "session %s: pushed %s to %s of %s",
                    self.session_id,
                    prepared.commit[:12],
                    record.branch,
                    self._where,
                )
        except GitError as exc:
            return self._failed(
                record, explain_git_failure(str(exc), where=self._where, github=self._is_github)
            )
        except OSError as exc:  # e.g. a full disk under the data directory
            return self._failed(record, f"openjules could not prepare the commit ({exc})")
        finally:
            await asyncio.to_thread(scratch.remove)
        return record, prepared

    async def _pull_request(
        self, record: DeliveryRecord, *, message: str, summary: str
    ) -> Delivered:
        """The pull request from the session's branch: the one already recorded, or a new
        one (recorded at once, so a re-run reuses it)."""
        if record.pull_request is not None:
            return Delivered(pull_request=record.pull_request)
        try:
            pull = await asyncio.to_thread(
                self._open_pull, branch=record.branch, message=message, summary=summary
            )
        except GitHubError as exc:
            return self._failed(record, exc.message, pushed=True)
        record = replace(record, pull_request=pull)
        await self._save(record)
        log.info("session %s: opened pull request %s", self.session_id, pull.url)
        return Delivered(pull_request=pull)

    def _prepare(
        self,
        scratch: Scratch,
        record: DeliveryRecord,
        base_commit: str,
        patch: str,
        message: str,
        auth: HttpAuth | None,
    ) -> _Prepared:
        """Blocking: read the remote branch, build the commit to push (if any)."""
        tip = scratch.remote_tip(url=self.source.url, branch=record.branch, auth=auth)
        ours = {record.pushed_commit, record.pending_commit} - {None}
        if tip is not None and tip not in ours:
            raise ForeignCommits(
                f"branch {record.branch} of {self._where} has commits this session did not "
                f"push (its tip is {tip[:12]}), so openjules left it alone."
            )
        tree = scratch.build_tree(base_commit=base_commit, patch=patch)
        # Follow-ups build on what this session pushed; a commit pushed by a crashed
        # attempt but never recorded (the pending one) is replaced.
        parent = record.pushed_commit if tip is not None and record.pushed_commit else base_commit
        if tip is not None and tip == record.pushed_commit and scratch.tree_of(tip) == tree:
            return _Prepared(commit=tip, expected_tip=tip, needs_push=False)
        commit = scratch.commit(tree=tree, parent=parent, message=message, author=self.author)
        return _Prepared(commit=commit, expected_tip=tip, needs_push=True)

    def _open_pull(self, *, branch: str, message: str, summary: str) -> PullRequest:
        """Blocking: the open pull request from ``branch`` (one an earlier attempt opened),
        or a new one."""
        owner, repo = self.source.owner, self.source.repo
        title, _, rest = message.partition("\n")
        body = "\n\n".join(
            part
            for part in (
                summary.strip(),
                rest.strip(),
                f"Opened by openjules from session {self.session_id}.",
            )
            if part
        )
        with GitHubClient(self.github) as client:
            pull = client.open_pull(owner, repo, head=branch) or client.create_pull(
                owner, repo, title=title.strip(), body=body, head=branch, base=self.base_branch
            )
        return PullRequest(
            url=str(pull.get("html_url", "")),
            title=str(pull.get("title", "")),
            description=str(pull.get("body") or ""),
            base_ref=str(pull.get("base", {}).get("ref", self.base_branch)),
            head_ref=str(pull.get("head", {}).get("ref", branch)),
        )

    def _failed(self, record: DeliveryRecord, reason: str, *, pushed: bool = False) -> Delivered:
        reason = self.github.redact(reason)
        log.warning("session %s: delivery failed: %s", self.session_id, reason)
        if pushed:
            opening = "I could not open a pull request: "
            closing = (
                f"The changes are on branch `{record.branch}`: open a pull request from it "
                "yourself, or apply this session's changeSet output with `git apply`."
            )
        else:
            opening = (
                "I could not push the changes, so no pull request was opened: "
                if self._is_github
                else "I could not push the changes: "
            )
            closing = KEPT_IN_CHANGESET
        return Delivered(
            pull_request=record.pull_request,
            notice=f"{opening}{_sentence(reason)} {closing}",
        )

    async def _save(self, record: DeliveryRecord) -> None:
        async with self.db.write() as conn:
            await deliveries.save(conn, session_id=self.session_id, record=record)


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
