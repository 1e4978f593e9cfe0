"""Adding a source: read a repository (a local path, any git URL, or a repository of the
configured GitHub) as a ``SourceRecord``, for the caller to store.

``openjules sources add`` and the test kit's ``register_source`` both go through
``read_source``, so what tests register is what operators register. Every refusal is a
``SourceError`` whose message is meant for a person.
"""

from __future__ import annotations

from openjules._errors import InvalidArgument
from openjules.engine import git
from openjules.engine.forge import catalog
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.github import GitHubClient, GitHubError
from openjules.settings import Settings
from openjules.store import sources as source_store
from openjules.store.sources import Forge, SourceRecord

GITHUB_PREFIX = "github:"


class SourceError(Exception):
    """The repository cannot be a source; ``message`` says why. ``option`` names the
    argument at fault (``"--name"``, ``"LOCATION"``) when it is a usage mistake."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.option = option


def describe_repository(
    location: str, *, owner: str, repo: str, is_private: bool = False
) -> SourceRecord:
    """Read branches and the default branch; raises ``git.GitError`` with a readable reason."""
    info = git.read_remote(location)
    return SourceRecord(
        owner=owner,
        repo=repo,
        url=location,
        is_private=is_private,
        default_branch=info.default_branch,
        branches=info.branches,
    )


def read_source(
    settings: Settings,
    location: str,
    *,
    owner: str | None = None,
    repo: str | None = None,
    is_private: bool = False,
) -> SourceRecord:
    """The source ``location`` describes, read from its repository.

    ``location`` is a local path, a git URL, or ``github:OWNER/REPO``; a URL of the
    configured GitHub (``https://github.com/OWNER/REPO``) without an explicit ``owner`` and
    ``repo`` is that GitHub's repository, read through its API (pull requests apply).
    Otherwise the source is named ``owner/repo``, by default after the location.
    """
    named = owner is not None or repo is not None
    on_github = GitHubAccess.from_settings(settings).repository_of(location)
    if on_github and not named:
        location = f"{GITHUB_PREFIX}{on_github[0]}/{on_github[1]}"
    if location.startswith(GITHUB_PREFIX):
        if named:
            raise SourceError(
                "a GitHub source is always named after its repository", option="--name"
            )
        owner, repo = owner_repo(location.removeprefix(GITHUB_PREFIX), hint="github:OWNER/REPO")
        _validate(owner, repo)
        return _read_github(settings, owner=owner, repo=repo)
    try:
        location = git.normalize_location(location)
    except git.GitError as exc:
        raise SourceError(str(exc)) from exc
    if owner is None or repo is None:
        default_owner, default_repo = git.default_source_name(location)
        owner, repo = owner or default_owner, repo or default_repo
    _validate(owner, repo)
    return _read_git(location, owner=owner, repo=repo, is_private=is_private)


def reread_source(settings: Settings, record: SourceRecord) -> SourceRecord:
    """``record`` with branches as they are now, keeping how its sessions run."""
    if record.forge is Forge.GITHUB:
        fresh = _read_github(settings, owner=record.owner, repo=record.repo)
    else:
        fresh = _read_git(
            record.url, owner=record.owner, repo=record.repo, is_private=record.is_private
        )
    return fresh.keeping_settings_of(record)


def owner_repo(text: str, *, hint: str) -> tuple[str, str]:
    """``OWNER/REPO`` split in two; a ``SourceError`` naming ``hint`` otherwise."""
    owner, _, repo = text.partition("/")
    if not owner or not repo or "/" in repo:
        option = hint.split()[0] if hint.startswith("--") else "LOCATION"
        raise SourceError(f"expected {hint}", option=option)
    return owner, repo


def _validate(owner: str, repo: str) -> None:
    try:
        source_store.validate_owner_repo(owner, repo)
    except InvalidArgument as exc:
        raise SourceError(exc.message) from exc


def _read_git(location: str, *, owner: str, repo: str, is_private: bool) -> SourceRecord:
    try:
        return describe_repository(location, owner=owner, repo=repo, is_private=is_private)
    except git.GitError as exc:
        raise SourceError(str(exc)) from exc


def _read_github(settings: Settings, *, owner: str, repo: str) -> SourceRecord:
    try:
        with GitHubClient(GitHubAccess.from_settings(settings)) as client:
            found = catalog.repository(client, owner=owner, repo=repo)
    except GitHubError as exc:
        raise SourceError(exc.message) from exc
    if isinstance(found, catalog.Skipped):
        raise SourceError(f"{found.full_name} cannot be a source: {found.reason}.")
    return found
