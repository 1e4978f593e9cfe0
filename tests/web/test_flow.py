"""The browser end to end: a person signs in, starts a session on a repository with plan
approval, approves the plan, watches the agent work live, answers its question, reviews
the diff and downloads a patch that applies; with "Open a pull request" the pull request
link appears. Real Chromium, a live server with workers, the fake model, the real sandbox
and the fake GitHub. The screenshots of the key pages are saved as test artifacts."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from openjules.testing import FakeGitHub, LiveServer, provision_user, register_github_source
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.support import api_client, git, list_activities, make_repo, wait_for_state
from tests.web.agent_support import (
    Scripts,
    ScriptStep,
    held,
    local_source,
    new_key,
    no_reload,
    release,
    session_id_of,
    sign_in,
    start,
    state_badge,
    wait_until,
)
from tests.web.browser_support import off_loop, save_screenshot
from tests.web.conftest import NewPage

pytestmark = needs_bubblewrap

# How long a page may take to show what the agent did (a session starts a sandbox).
AGENT_MS = 60_000
MINUS = "\u2212"  # the counts' minus sign
# The screenshots: both sizes the issue names, and the dark scheme at the larger one.
VIEWS = [(1280, 800, "light"), (390, 844, "light"), (1280, 800, "dark")]
GITHUB_TOKEN = "ghp_flow" + secrets.token_hex(12)
# The greeter repository every test edits (branch main, plus develop).
GREETER_FILES = {
    "app.py": "print('hello')\n",
    "AGENTS.md": "Always greet politely.\n",
    "README.md": "# greeter\n\nPrints a greeting.\n",
}


@pytest.fixture(scope="module")
def github(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGitHub]:
    """The fake GitHub of one backend's tests."""
    with FakeGitHub(tmp_path_factory.mktemp(f"github-{backend}"), token=GITHUB_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def agent_overrides(github: FakeGitHub) -> dict[str, Any]:
    """Three workers, bashOutput artifacts, and pull requests opened on the fake GitHub."""
    return {
        "workers": 3,
        "bash_output_artifacts": True,
        "github_api_url": github.api_url,
        "github_token": GITHUB_TOKEN,
    }


@dataclass(frozen=True)
class Greeter:
    repo: Path
    source: str  # the greeter repository as a local git source
    github_source: str  # the same repository on the fake GitHub (acme/greeter)


@pytest.fixture(scope="module")
def greeter(
    agent: LiveServer, github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> Greeter:
    repo = make_repo(tmp_path_factory.mktemp("greeter"), GREETER_FILES, branches=("develop",))
    github.add_repo("acme", "greeter", from_path=repo)
    return Greeter(
        repo=repo,
        source=local_source(agent, repo, "greeter-local"),
        github_source=off_loop(
            register_github_source, agent.settings, owner="acme", repo="greeter"
        ),
    )


@pytest.fixture
def ada(agent: LiveServer) -> Iterator[tuple[str, httpx.Client]]:
    """The user the screenshots show: her API key and client."""
    key = off_loop(provision_user, agent.settings, name="ada")
    with api_client(agent.api, key) as api:
        yield key, api


def expect_badge(page: Page, label: str) -> None:
    expect(state_badge(page)).to_contain_text(label, timeout=AGENT_MS)


def start_session(
    page: Page,
    url: str,
    *,
    source: str,
    prompt: str,
    approval: bool = False,
    pull_request: bool = False,
) -> str:
    """Fill in and submit the new-session form (reached through the header's link)."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New session").click()
    page.wait_for_url(f"{url}/new")
    page.get_by_label("Repository").select_option(source)
    expect(page.get_by_label("Branch")).to_have_value("main")
    page.get_by_label("Prompt").fill(prompt)
    if approval:
        page.get_by_label("Require plan approval").check()
    if pull_request:
        page.get_by_label("Open a pull request").check()
    page.get_by_role("button", name="Start session").click()
    page.wait_for_url(re.compile(r"/session/[0-9]+$"))
    return session_id_of(page)


def test_plan_approval_live_timeline_question_diff_and_patch(
    agent: LiveServer, scripts: Scripts, greeter: Greeter, new_page: NewPage, tmp_path: Path
) -> None:
    key = new_key(agent)
    prompt = scripts.prompt(
        "Make the app greet the world",
        [
            call("read_file", path="app.py"),
            call(
                "propose_plan",
                steps=[
                    {
                        "title": "Greet the world",
                        "description": "Edit app.py so it names the world.",
                    },
                    {"title": "Say goodbye", "description": "Add goodbye.py if wanted."},
                ],
            ),
            # After the approval: held until the page has loaded again.
            call("shell", command=held("python3 app.py")),
            call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
            call("complete_step", title="Greeted the world", description="Changed the greeting."),
            call("ask_user", text="Should the app also say goodbye?"),
            # After the answer.
            call("write_file", path="goodbye.py", content="print('goodbye')\n"),
            call("shell", command="python3 app.py && python3 goodbye.py"),
            call("complete_step", title="Said goodbye", description="Added goodbye.py."),
            call(
                "finish",
                summary="The app greets the world and says goodbye.",
                commit_message="Greet the world and say goodbye",
            ),
        ],
    )
    page = new_page()
    sign_in(page, agent.url, key)
    sid = start_session(page, agent.url, source=greeter.source, prompt=prompt, approval=True)

    # The plan, as a numbered list, waiting for approval.
    steps = page.locator("ol.plan-steps > li")
    expect(steps).to_have_count(2, timeout=AGENT_MS)
    expect(steps.nth(0)).to_contain_text("Greet the world")
    expect(steps.nth(1)).to_contain_text("Add goodbye.py if wanted.")
    expect_badge(page, "Awaiting plan approval")

    with page.expect_navigation():
        page.get_by_role("button", name="Approve plan").click()
    # New activities arrive over the live stream, the page never reloading.
    with no_reload(page):
        shown = page.locator("ol#timeline > li.activity").count()
        release(agent, sid)
        page.wait_for_selector(f"ol#timeline > li.activity >> nth={shown}", timeout=AGENT_MS)
        question = page.wait_for_selector("ol#timeline > li.activity.question", timeout=AGENT_MS)
        assert question is not None
        assert "Should the app also say goodbye?" in question.inner_text()
        assert "Waiting for your answer" in question.inner_text()
        expect_badge(page, "Awaiting your reply")
        expect(page.locator("ol#timeline details.command").first).to_contain_text("python3 app.py")
        assert page.locator("ol#timeline > li.activity").count() > shown

    page.get_by_label("Message").fill("Yes: add goodbye.py.")
    with page.expect_navigation():
        page.get_by_role("button", name="Send").click()
    with no_reload(page):
        expect_badge(page, "Completed")
        expect(page.locator("li.question")).to_have_count(0)
        expect(page.locator("ol#timeline > li.user-message")).to_contain_text(
            "Yes: add goodbye.py."
        )

        # The diff viewer: the changed files with their counts, and a patch that applies.
        files = page.locator("section#changes ul.changed-files > li")
        expect(files).to_have_count(2, timeout=AGENT_MS)
        by_path = {
            f.locator("code").inner_text(): f.locator(".counts").inner_text() for f in files.all()
        }
        assert by_path == {"app.py": f"+1 {MINUS}1", "goodbye.py": f"+1 {MINUS}0"}
        expect(page.locator("section#changes .diff2html-target").first).to_be_visible()

    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download patch").click()
    assert downloading.value.suggested_filename == f"session-{sid}.patch"
    downloaded = tmp_path / "session.patch"
    downloading.value.save_as(downloaded)
    with api_client(agent.api, key) as api:
        session = wait_for_state(api, sid, {"COMPLETED"})
    git_patch = next(o["changeSet"] for o in session["outputs"] if "changeSet" in o)["gitPatch"]
    assert downloaded.read_text() == git_patch["unidiffPatch"]
    clone = tmp_path / "clone"
    git("clone", "-q", str(greeter.repo), str(clone), cwd=tmp_path)
    git("checkout", "-q", git_patch["baseCommitId"], cwd=clone)
    git("apply", "--check", str(downloaded), cwd=clone)
    git("apply", str(downloaded), cwd=clone)
    assert (clone / "app.py").read_text() == "print('hello, world')\n"
    assert (clone / "goodbye.py").read_text() == "print('goodbye')\n"


def test_with_open_a_pull_request_the_pull_request_link_appears(
    agent: LiveServer, scripts: Scripts, greeter: Greeter, github: FakeGitHub, new_page: NewPage
) -> None:
    key = new_key(agent)
    prompt = scripts.prompt(
        "Make the app greet the world",
        [
            call("propose_plan", steps=[{"title": "Greet", "description": "Edit app.py."}]),
            call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
            # Held until the page has loaded: the pull request is opened after that.
            call("shell", command=held("python3 app.py")),
            call("finish", summary="The app greets the world.", commit_message="Greet the world"),
        ],
    )
    page = new_page()
    sign_in(page, agent.url, key)
    sid = start_session(
        page, agent.url, source=greeter.github_source, prompt=prompt, pull_request=True
    )
    header_link = page.locator("#session-header").get_by_role("link", name="Pull request")
    with no_reload(page):
        expect(header_link).to_have_count(0)
        release(agent, sid)
        expect(header_link).to_be_visible(timeout=AGENT_MS)
        with api_client(agent.api, key) as api:
            session = wait_for_state(api, sid, {"COMPLETED"})
        url = next(o["pullRequest"]["url"] for o in session["outputs"] if "pullRequest" in o)
        assert url.startswith(f"{github.url}/acme/greeter/pull/")
        assert header_link.get_attribute("href") == url
        changes_link = page.locator("section#changes").get_by_role("link", name="Pull request")
        expect(changes_link).to_have_attribute("href", url, timeout=AGENT_MS)
    assert any(p.title == "Greet the world" for p in github.pulls(owner="acme", repo="greeter"))

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
    row = page.locator(f"li.session-row#session-{sid}")
    expect(row.get_by_role("link", name="Pull request")).to_have_attribute("href", url)


def test_screenshots_of_the_key_pages(
    agent: LiveServer,
    scripts: Scripts,
    greeter: Greeter,
    ada: tuple[str, httpx.Client],
    new_page: NewPage,
) -> None:
    """Sessions in several states, then each key page at each of VIEWS (save_screenshot)."""
    key, api = ada

    def create(text: str, steps: list[ScriptStep], *, approval: bool = False) -> str:
        prompt = scripts.prompt(text, steps)
        return start(
            api, prompt, source=greeter.source, branch="main", require_plan_approval=approval
        )

    failed = create(
        "Upgrade every dependency to its latest major version",
        [call("propose_plan", steps=[{"title": "Upgrade", "description": "Bump versions."}])],
        approval=True,
    )
    completed = create(
        "Make the greeting friendlier and add a farewell script",
        [
            call(
                "propose_plan",
                steps=[
                    {"title": "Friendlier greeting", "description": "Greet the world in app.py."},
                    {"title": "Farewell", "description": "Add farewell.py."},
                ],
            ),
            call(
                "edit_file",
                path="app.py",
                old_text="print('hello')",
                new_text="import sys\n\nname = sys.argv[1] if len(sys.argv) > 1 else 'world'\n"
                "print(f'hello, {name}!')",
            ),
            call("shell", command="python3 app.py && python3 app.py Ada"),
            call("complete_step", title="Friendlier greeting", description="app.py takes a name."),
            call("write_file", path="farewell.py", content="print('goodbye, and thanks!')\n"),
            call(
                "edit_file",
                path="README.md",
                old_text="Prints a greeting.",
                new_text="Prints a greeting; `python3 app.py NAME` greets NAME.\n\n"
                "`farewell.py` says goodbye.",
            ),
            call("complete_step", title="Farewell", description="Added farewell.py."),
            call(
                "finish",
                summary="The greeting takes a name and there is a farewell.",
                commit_message="Friendlier greeting, and a farewell",
            ),
        ],
    )
    asking = create(
        "Translate the greeting",
        [
            call("propose_plan", steps=[{"title": "Translate", "description": "Edit app.py."}]),
            call("ask_user", text="Which language should the greeting be in: French or Spanish?"),
        ],
    )
    waiting = create(
        "Refactor the greeter into a function with tests",
        [
            call("read_file", path="app.py"),
            call(
                "propose_plan",
                steps=[
                    {
                        "title": "Extract greet()",
                        "description": "Move the greeting into a function "
                        "greet(name) in app.py, keeping the script's output the same.",
                    },
                    {
                        "title": "Add tests",
                        "description": "Add test_app.py with unittest cases for "
                        "greet() with and without a name.",
                    },
                    {"title": "Run the tests", "description": "python3 -m unittest must pass."},
                ],
            ),
        ],
        approval=True,
    )
    running = create(
        "Find out why the greeter is slow",
        [
            call(
                "propose_plan",
                steps=[
                    {"title": "Measure", "description": "Time the script."},
                    {"title": "Fix", "description": "Make it fast."},
                ],
            ),
            call("shell", command="python3 app.py"),
            call("shell", command="ls -la && cat README.md AGENTS.md"),
            call("complete_step", title="Measured", description="The script itself is quick."),
            call("shell", command="sleep 120"),
            call("finish", summary="Nothing to fix.", commit_message="Nothing"),
        ],
    )
    assert api.post(f"/sessions/{failed}:cancel", json={}).status_code == 200
    wait_for_state(api, failed, {"FAILED"})
    wait_for_state(api, completed, {"COMPLETED"})
    wait_for_state(api, asking, {"AWAITING_USER_FEEDBACK"})
    wait_for_state(api, waiting, {"AWAITING_PLAN_APPROVAL"})
    wait_for_state(api, running, {"IN_PROGRESS"})
    # The running session's commands before the sleep have their activities.
    wait_until(
        lambda: sum("progressUpdated" in a for a in list_activities(api, running)) >= 3,
        seconds=AGENT_MS / 1000,
        what="the running session's commands",
    )

    try:
        for width, height, scheme in VIEWS:
            page = new_page(width=width, height=height, color_scheme=scheme)
            dark = "-dark" if scheme == "dark" else ""
            sign_in(page, agent.url, key)
            expect(page.locator("li.session-row")).to_have_count(5)
            save_screenshot(page, f"sessions-list{dark}")

            page.goto(f"{agent.url}/new")
            page.get_by_label("Repository").select_option(greeter.source)
            page.get_by_label("Prompt").fill(
                "Add a --name option so the greeting can address anyone.\n\n"
                "Keep the default output unchanged."
            )
            page.get_by_label("Require plan approval").check()
            save_screenshot(page, f"new-session{dark}")

            page.goto(f"{agent.url}/session/{waiting}")
            expect(page.get_by_role("button", name="Approve plan")).to_be_visible()
            save_screenshot(page, f"plan-waiting{dark}")

            page.goto(f"{agent.url}/session/{running}")
            commands = page.locator("ol#timeline details.command")
            expect(commands).to_have_count(2)
            commands.nth(1).locator("summary").click()
            expect(commands.nth(1).locator("pre.output")).to_be_visible()
            save_screenshot(page, f"timeline-running{dark}")

            page.goto(f"{agent.url}/session/{completed}")
            expect(
                page.locator("section#changes .diff2html-target .d2h-file-wrapper")
            ).to_have_count(3)
            save_screenshot(page, f"diff-completed{dark}")
            page.close()
    finally:
        api.post(f"/sessions/{running}:cancel", json={})
    wait_for_state(api, running, {"FAILED"})
