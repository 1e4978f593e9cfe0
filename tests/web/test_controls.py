"""The session controls in the browser, on both backends, with the agent at work (the
fake model, real git and bubblewrap): Pause and Resume while it runs a command, Cancel
with its confirmation, Archive and the sessions page's filters, and the sessions page
following the user's sessions live (new rows, changed badges, rows leaving the view).

Each test is one user's; the module shares one server per backend.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Page, expect

from openjules.store.session_actions import CANCELLED_REASON, PAUSED_TITLE, RESUMED_TITLE
from openjules.testing import LiveServer
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.support import TERMINAL, api_client, make_repo, processes_with, wait_for_state
from tests.web.agent_support import (
    Scripts,
    local_source,
    no_reload,
    row_badge,
    sign_in,
    start,
    state_badge,
    wait_until,
)

pytestmark = needs_bubblewrap

LIVE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def source(agent: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = make_repo(tmp_path_factory.mktemp("controls-repo"), {"app.py": "print('hello')\n"})
    return local_source(agent, repo, "controls")


@pytest.fixture
def client(agent: LiveServer, api_key: str) -> Iterator[httpx.Client]:
    with api_client(agent.api, api_key) as c:
        yield c


def long_sleep() -> str:
    """A command that runs until it is stopped, found in /proc by its odd length."""
    return f"sleep {60 + secrets.randbelow(10**6) / 10**6:.6f}"


def running(command: str) -> bool:
    return bool(processes_with(command))


def test_pause_and_resume_from_the_page_while_the_agent_runs_a_command(
    agent: LiveServer,
    scripts: Scripts,
    source: str,
    api_key: str,
    client: httpx.Client,
    page: Page,
) -> None:
    sleep = long_sleep()
    prompt = scripts.add(
        f"Pause me while I sleep {secrets.token_hex(3)}",
        [
            call("propose_plan", steps=[{"title": "Sleep, then write"}]),
            # Each pause lands in a run of the command; after a resume the step runs
            # again: long twice, then quickly.
            lambda times: call("shell", command=sleep if times <= 2 else "true"),
            call("write_file", path="resumed.txt", content="resumed\n"),
            call("finish", summary="Wrote resumed.txt.", commit_message="Add resumed.txt"),
        ],
    )
    sid = start(client, prompt, source=source)
    sign_in(page, agent.url, api_key)
    page.goto(f"{agent.url}/session/{sid}")
    with no_reload(page):
        expect(state_badge(page)).to_contain_text("In progress", timeout=LIVE_TIMEOUT_MS)
        wait_until(lambda: running(sleep), what="the agent's command starting")

    # The page's buttons.
    page.get_by_role("button", name="Pause").click()
    expect(state_badge(page)).to_have_text(re.compile(r"Paused$"))
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.locator("#timeline li.activity").last).to_contain_text(PAUSED_TITLE)
    assert client.get(f"/sessions/{sid}").json()["state"] == "PAUSED"
    wait_until(lambda: not running(sleep), seconds=10, what="the paused command stopping")

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#timeline li.activity").last).to_contain_text(RESUMED_TITLE)
    expect(state_badge(page)).to_have_text(re.compile(r"In progress$"))
    wait_until(lambda: running(sleep), what="the command running again")

    # Paused and resumed elsewhere (another tab, the API): the page follows live.
    with no_reload(page):
        assert client.post(f"/sessions/{sid}:pause").json()["state"] == "PAUSED"
        expect(state_badge(page)).to_have_text(re.compile(r"Paused$"))
        expect(page.get_by_role("button", name="Resume")).to_be_visible()
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
        expect(page.locator("#working-note")).to_be_hidden()
        wait_until(lambda: not running(sleep), seconds=10, what="the paused command stopping")
        assert client.post(f"/sessions/{sid}:resume").json()["state"] == "IN_PROGRESS"
        # It goes on where it stopped, and completes.
        expect(state_badge(page)).to_have_text(re.compile(r"Completed$"), timeout=LIVE_TIMEOUT_MS)
        expect(page.get_by_role("button", name="Resume")).to_have_count(0)
        expect(page.locator("ul.changed-files")).to_contain_text("resumed.txt")
        expect(page.locator("#timeline li.activity.completed")).to_have_count(1)
        expect(page.locator("#timeline")).to_contain_text(RESUMED_TITLE)
    session = client.get(f"/sessions/{sid}").json()
    assert session["state"] == "COMPLETED"
    assert "+resumed" in session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert scripts.asked(prompt, 1) == 3  # the interrupted step ran again after each resume


def test_cancel_asks_for_confirmation_then_a_follow_up_wakes_the_session(
    agent: LiveServer,
    scripts: Scripts,
    source: str,
    api_key: str,
    client: httpx.Client,
    page: Page,
) -> None:
    sleep = long_sleep()
    woken = call("finish", summary="Woken by a follow-up.", commit_message="Nothing")
    prompt = scripts.add(
        f"Cancel me {secrets.token_hex(3)}",
        [
            call("propose_plan", steps=[{"title": "Sleep"}]),
            # The cancelled turn is asked again once a follow-up wakes the session.
            lambda asked: call("shell", command=sleep) if asked == 1 else woken,
        ],
    )
    sid = start(client, prompt, source=source)
    sign_in(page, agent.url, api_key)
    page.goto(f"{agent.url}/session/{sid}")
    expect(state_badge(page)).to_contain_text("In progress", timeout=LIVE_TIMEOUT_MS)
    wait_until(lambda: running(sleep), what="the agent's command starting")

    confirm = page.get_by_role("button", name="Yes, cancel session")
    expect(confirm).to_be_hidden()  # behind the disclosure: one click cannot cancel
    page.locator("summary", has_text="Cancel session").click()
    expect(confirm).to_be_visible()
    assert client.get(f"/sessions/{sid}").json()["state"] == "IN_PROGRESS"
    confirm.click()

    expect(state_badge(page)).to_have_text(re.compile(r"Failed$"))
    failed = page.locator("#timeline li.activity.failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text(CANCELLED_REASON)
    expect(page.locator("summary", has_text="Cancel session")).to_have_count(0)
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    assert client.get(f"/sessions/{sid}").json()["state"] == "FAILED"
    wait_until(lambda: not running(sleep), seconds=10, what="the cancelled command stopping")

    # A follow-up from the page wakes the session (the form posts and the page comes back);
    # the page then follows the woken session to its end without reloading.
    page.get_by_label("Message").fill("Never mind the sleep; wrap up.")
    with page.expect_navigation():
        page.get_by_role("button", name="Send").click()
    with no_reload(page):
        expect(state_badge(page)).to_have_text(re.compile(r"Completed$"), timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#timeline li.activity.user-message")).to_contain_text("wrap up")
    expect(page.locator("#timeline li.activity.completed")).to_contain_text(
        "Woken by a follow-up."
    )


def rows(page: Page) -> list[str]:
    """The ids of the sessions the list shows, in order."""
    ids = page.locator("#session-list > li.session-row").evaluate_all(
        "rows => rows.map(row => row.id)"
    )
    return [str(i).removeprefix("session-") for i in ids]


def filter_list(
    page: Page, *, state: str = "Any state", archived: str = "Not archived", search: str = ""
) -> None:
    """Choose a view in the filter form and show it (the form GETs ``/?state=..``)."""
    query = {
        "state": page.get_by_label("State").select_option(label=state)[0],
        "archived": page.get_by_label("Archived").select_option(label=archived)[0],
        "q": search,
    }
    page.get_by_label("Search titles").fill(search)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(f"{page.url.split('?')[0]}?{urlencode(query)}")


def test_archive_the_filters_and_the_live_sessions_list(
    agent: LiveServer, scripts: Scripts, api_key: str, client: httpx.Client, page: Page
) -> None:
    tag = secrets.token_hex(3)
    finish = [
        call("write_file", path="notes.md", content="# Notes\n"),
        call("finish", summary="Wrote notes.", commit_message="Add notes"),
    ]
    plan = call("propose_plan", steps=[{"title": "Write notes"}])
    alpha = start(client, scripts.add(f"Alpha report {tag}", [plan, *finish]))
    beta = start(
        client, scripts.add(f"Beta plan {tag}", [plan, *finish]), require_plan_approval=True
    )
    ask = call("ask_user", text="Which notes?")
    gamma = start(client, scripts.add(f"Gamma question {tag}", [plan, ask]))
    wait_for_state(client, alpha, TERMINAL)
    wait_for_state(client, beta, {"AWAITING_PLAN_APPROVAL"} | TERMINAL)
    wait_for_state(client, gamma, {"AWAITING_USER_FEEDBACK"} | TERMINAL)

    sign_in(page, agent.url, api_key)
    assert rows(page) == [gamma, beta, alpha]  # newest first
    expect(row_badge(page, alpha)).to_have_text(re.compile(r"Completed$"))
    expect(row_badge(page, beta)).to_have_text(re.compile(r"Awaiting plan approval$"))
    expect(row_badge(page, gamma)).to_have_text(re.compile(r"Awaiting your reply$"))

    # Archive from the session's page: the list hides it unless asked.
    page.get_by_role("link", name=f"Alpha report {tag}").click()
    page.get_by_role("button", name="Archive", exact=True).click()
    expect(page.get_by_role("button", name="Unarchive")).to_be_visible()
    expect(page.locator("#session-header")).to_contain_text("Archived")
    assert client.get(f"/sessions/{alpha}").json()["archived"] is True
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
    page.wait_for_url(f"{agent.url}/")
    assert rows(page) == [gamma, beta]
    filter_list(page, archived="Archived")
    assert "archived=only" in page.url
    assert rows(page) == [alpha]
    expect(page.locator(f"#session-{alpha}")).to_contain_text("Archived")
    filter_list(page, archived="All")
    assert rows(page) == [gamma, beta, alpha]

    # The state filter and the title search narrow the list (the search ignores case).
    filter_list(page, state="Completed", archived="All")
    assert rows(page) == [alpha]
    filter_list(page, state="Completed")
    assert rows(page) == []
    expect(page.locator("#no-sessions")).to_be_visible()
    filter_list(page, search="beta")
    assert rows(page) == [beta]
    filter_list(page, state="Awaiting your reply", archived="All", search=tag)
    assert rows(page) == [gamma]
    filter_list(page, archived="All", search="no such title")
    assert rows(page) == []

    # Unarchive: back in the default view.
    page.goto(f"{agent.url}/session/{alpha}")
    page.get_by_role("button", name="Unarchive").click()
    expect(page.get_by_role("button", name="Archive", exact=True)).to_be_visible()
    page.goto(f"{agent.url}/")
    assert rows(page) == [gamma, beta, alpha]

    # Live, without reloading: a session created through the API appears at the top, and
    # its badge follows it; one that leaves the view (archived) goes.
    with no_reload(page):
        delta = start(client, scripts.add(f"Delta live {tag}", [plan, ask]))
        expect(page.locator(f"#session-{delta}")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(row_badge(page, delta)).to_have_text(
            re.compile(r"Awaiting your reply$"), timeout=LIVE_TIMEOUT_MS
        )
        assert rows(page) == [delta, gamma, beta, alpha]
        assert client.post(f"/sessions/{beta}:approvePlan").status_code == 200
        expect(row_badge(page, beta)).to_have_text(
            re.compile(r"Completed$"), timeout=LIVE_TIMEOUT_MS
        )
        assert client.post(f"/sessions/{gamma}:archive").status_code == 200
        expect(page.locator(f"#session-{gamma}")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
        assert rows(page) == [delta, beta, alpha]

    # A filtered view follows too: a session that stops matching leaves it.
    page.goto(f"{agent.url}/?state=AWAITING_USER_FEEDBACK")
    assert rows(page) == [delta]
    with no_reload(page):
        assert client.post(f"/sessions/{delta}:cancel").status_code == 200
        expect(page.locator(f"#session-{delta}")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
        expect(page.locator("#no-sessions")).to_be_visible()
