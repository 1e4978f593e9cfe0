"""Delivery (engine/forge/delivery.py) against the fake GitHub and a real database: what
happens when it runs again — after a crash between the push and its record, after a
follow-up that changed nothing, and when somebody else pushed to the session's branch."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.delivery import Publisher, branch_name
from openjules.engine.forge.push import Author
from openjules.engine.workspace import sync_mirror
from openjules.store import pull_request_deliveries as deliveries
from openjules.store.database import Database
from openjules.store.sources import Forge, SourceRecord
from openjules.testing import FakeGitHub, LiveServer, provision_user
from tests.support import api_client, git, make_repo


@dataclass
class Setup:
    github: FakeGitHub
    publisher: Publisher
    db: Database
    base: str
    work: Path  # a clone of the source, to make patches with

    @property
    def bare(self) -> Path:
        return self.github.repo_path("acme", "greeter")

    def patch(self, **files: str) -> str:
        for name, content in files.items():
            (self.work / name).write_text(content)
        git("add", "--all", cwd=self.work)
        return git("diff", "--cached", "--binary", self.base, cwd=self.work)

    def tip(self, branch: str) -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.bare).strip()


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeGitHub]:
    source = make_repo(tmp_path / "greeter", {"app.py": "print('hello')\n"})
    with FakeGitHub(tmp_path / "github") as fake:
        fake.add_repo("acme", "greeter", from_path=source)
        yield fake


@pytest.fixture
def session_id(server: LiveServer) -> str:
    key = provision_user(server.settings, name=f"delivery-{secrets.token_hex(4)}")
    with api_client(server.api, key) as client:
        return str(client.post("/sessions", json={"prompt": "Greet"}).json()["id"])


@pytest.fixture
async def setup(
    server: LiveServer, github: FakeGitHub, session_id: str, tmp_path: Path
) -> AsyncIterator[Setup]:
    access = GitHubAccess(api_url=github.api_url, token=github.token)
    url = github.clone_url("acme", "greeter")
    mirror = tmp_path / "mirror.git"
    sync_mirror(url=url, mirror=mirror, auth=access.git_auth(url))
    work = tmp_path / "work"
    git("clone", "-q", str(mirror), str(work), cwd=tmp_path)
    db = Database(server.settings.resolved_database_url())
    publisher = Publisher(
        db=db,
        session_id=session_id,
        session_title="Greet the world",
        source=SourceRecord(
            owner="acme",
            repo="greeter",
            url=url,
            is_private=False,
            default_branch="main",
            branches=["main"],
            forge=Forge.GITHUB,
        ),
        base_branch="main",
        mirror=mirror,
        scratch_path=tmp_path / "scratch.git",
        github=access,
        author=Author(name="openjules", email="openjules@localhost"),
    )
    base = git("rev-parse", "HEAD", cwd=work).strip()
    yield Setup(github=github, publisher=publisher, db=db, base=base, work=work)
    await db.dispose()


async def test_a_crash_after_the_push_and_before_its_record_opens_no_second_pull_request(
    setup: Setup,
) -> None:
    patch = setup.patch(**{"app.py": "print('hello, world')\n"})
    first = await setup.publisher.publish(
        base_commit=setup.base, patch=patch, message="Greet", summary="Greets."
    )
    assert first.notice == ""
    assert first.pull_request is not None
    branch = first.pull_request.head_ref
    pushed = setup.tip(branch)

    # As a worker that died right after `git push` and after creating the pull request
    # leaves it: the commit recorded only as pending, no pull request recorded.
    async with setup.db.write() as conn:
        await deliveries.save(
            conn,
            session_id=setup.publisher.session_id,
            record=deliveries.DeliveryRecord(branch=branch, pending_commit=pushed),
        )
    again = await setup.publisher.publish(
        base_commit=setup.base, patch=patch, message="Greet", summary="Greets."
    )
    assert again.notice == ""
    assert again.pull_request == first.pull_request
    assert len(setup.github.pulls()) == 1
    tip = setup.tip(branch)
    assert git("rev-parse", f"{tip}^", cwd=setup.bare).strip() == setup.base
    assert git("show", f"{tip}:app.py", cwd=setup.bare) == "print('hello, world')\n"


async def test_running_again_without_new_changes_pushes_nothing(setup: Setup) -> None:
    patch = setup.patch(**{"app.py": "print('hello, world')\n"})
    first = await setup.publisher.publish(
        base_commit=setup.base, patch=patch, message="Greet", summary=""
    )
    assert first.pull_request is not None
    tip = setup.tip(first.pull_request.head_ref)
    pushes = sum("receive-pack" in r.path for r in setup.github.requests)

    again = await setup.publisher.publish(
        base_commit=setup.base, patch=patch, message="Greet", summary=""
    )
    assert again.pull_request == first.pull_request
    assert again.notice == ""
    assert setup.tip(first.pull_request.head_ref) == tip
    assert sum("receive-pack" in r.path for r in setup.github.requests) == pushes


async def test_commits_somebody_else_pushed_to_the_branch_are_never_overwritten(
    setup: Setup, tmp_path: Path
) -> None:
    first = await setup.publisher.publish(
        base_commit=setup.base,
        patch=setup.patch(**{"app.py": "print('hello, world')\n"}),
        message="Greet",
        summary="",
    )
    assert first.pull_request is not None
    branch = first.pull_request.head_ref
    # A reviewer pushes a fix to the pull request's branch (straight into the bare repo).
    theirs = tmp_path / "theirs"
    git("clone", "-q", "-b", branch, str(setup.bare), str(theirs), cwd=tmp_path)
    (theirs / "REVIEW.md").write_text("looks good\n")
    git("add", ".", cwd=theirs)
    git("commit", "-q", "-m", "review", cwd=theirs)
    git("push", "-q", "origin", branch, cwd=theirs)
    their_tip = setup.tip(branch)

    follow_up = await setup.publisher.publish(
        base_commit=setup.base,
        patch=setup.patch(**{"bye.py": "print('bye')\n"}),
        message="Say goodbye",
        summary="",
    )
    assert setup.tip(branch) == their_tip
    assert "did not push" in follow_up.notice
    assert "changeSet" in follow_up.notice
    assert follow_up.pull_request == first.pull_request, "the pull request still exists"


async def test_an_empty_patch_is_not_delivered(setup: Setup) -> None:
    result = await setup.publisher.publish(
        base_commit=setup.base, patch="", message="Nothing", summary=""
    )
    assert result.pull_request is None
    assert "nothing to push" in result.notice
    assert setup.github.pulls() == []


async def test_without_a_token_nothing_is_pushed_and_the_notice_says_what_to_set(
    setup: Setup,
) -> None:
    publisher = replace(
        setup.publisher, github=GitHubAccess(api_url=setup.github.api_url, token="")
    )
    result = await publisher.publish(
        base_commit=setup.base,
        patch=setup.patch(**{"app.py": "print('hi')\n"}),
        message="Hi",
        summary="",
    )
    assert result.pull_request is None
    assert "OPENJULES_GITHUB_TOKEN" in result.notice
    assert "changeSet" in result.notice
    assert not [r for r in setup.github.requests if "receive-pack" in r.path]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Fix the login bug!", "fix-the-login-bug-42"),
        ("Überprüfe die API", "uberprufe-die-api-42"),
        ("日本語", "openjules-42"),
        ("a" * 30 + " " + "b" * 30, "a" * 30 + "-" + "b" * 9 + "-42"),
        ("--weird--", "weird-42"),
    ],
)
def test_branch_names_are_slug_dash_session_id(title: str, expected: str) -> None:
    name = branch_name(title=title, session_id="42")
    assert name == expected
    git_check = git("check-ref-format", "--branch", name, cwd=Path.cwd())
    assert git_check.strip() == name
