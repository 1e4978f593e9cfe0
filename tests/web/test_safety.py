"""What the web app must never let happen, in the browser, on both backends, with the agent
at work (the fake model, real git and bubblewrap):

- one user sees nothing of another's sessions (lists, pages, patch, changes, live streams:
  a 404 page) and cannot press their buttons;
- "Sign out" and a revoked API key end the web session; a wrong key sets no cookie; the
  cookie is HttpOnly and SameSite=Lax, and never opens the API;
- a form post without this session's CSRF token, with a wrong one or from another site
  is refused (a 403 page) and changes nothing;
- markup a user wrote or the agent produced (title, prompt, plan, messages, question,
  branch, file names in the patch) shows as text, served and live: no dialog opens, no
  element is injected;
- every page carries a Content-Security-Policy whose script-src allows no inline script,
  and the pages report no console error or CSP violation (the ``page_errors`` fixture).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, Response, Route, expect

from openjules.testing import LiveServer, provision_user
from openjules.web.diffs import split_patch
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.support import (
    MISSING_SESSION_ID,
    TERMINAL,
    api_client,
    list_activities,
    make_repo,
    wait_for_state,
)
from tests.web.agent_support import (
    Scripts,
    csrf_token,
    local_source,
    new_key,
    no_reload,
    revoke_key,
    row_badge,
    session_id_of,
    sign_in,
    start,
    state_badge,
)
from tests.web.browser_support import PageErrors, off_loop
from tests.web.conftest import NewPage

pytestmark = needs_bubblewrap

LIVE_TIMEOUT_MS = 30_000
COOKIE = "openjules_session"
# A session with plan approval that stops there: it waits for the plan to be approved.
PARKED = [call("propose_plan", steps=[{"title": "Wait"}])]


@dataclass(frozen=True)
class Owner:
    """A user with a session that ran to a patch (repoless), shared by the module's tests."""

    key: str
    session_id: str

    def api(self, live: LiveServer) -> httpx.Client:
        return api_client(live.api, self.key)


@pytest.fixture(scope="module")
def owner(agent: LiveServer, scripts: Scripts) -> Owner:
    key = new_key(agent, "owner")
    prompt = scripts.add(
        f"Write the notes {secrets.token_hex(3)}",
        [
            call("propose_plan", steps=[{"title": "Write notes"}]),
            call("write_file", path="notes.md", content="# Notes\n"),
            call("finish", summary="Wrote notes.", commit_message="Add notes"),
        ],
    )
    with api_client(agent.api, key) as client:
        sid = start(client, prompt)
        assert wait_for_state(client, sid, TERMINAL)["state"] == "COMPLETED"
    return Owner(key=key, session_id=sid)


def session_of(live: LiveServer, owner: Owner) -> dict[str, Any]:
    """The owner's session through the API, with its activities."""
    with owner.api(live) as client:
        session: dict[str, Any] = client.get(f"/sessions/{owner.session_id}").json()
        session["activities"] = list_activities(client, owner.session_id)
    return session


def expect_refusals(page_errors: PageErrors, *statuses: int) -> None:
    """Chromium logs each page answered with an error status: here they are the point."""
    codes = "|".join(str(s) for s in statuses)
    page_errors.allow(rf"^Failed to load resource: the server responded with a status of ({codes})")


def serve(html: str) -> Callable[[Route], None]:
    """A route handler answering with ``html`` (a page of another site)."""

    def handle(route: Route) -> None:
        route.fulfill(body=html, content_type="text/html")

    return handle


@contextmanager
def tampered(page: Page, url: str, token: str) -> Iterator[None]:
    """The page's form posts to ``url`` with their CSRF token replaced by ``token`` (a
    pattern matching it: left out). Done on the wire: the page's live header may render
    its forms again at any moment."""

    def handle(route: Route) -> None:
        body = route.request.post_data or ""
        if token.startswith("("):
            body = re.sub(token, "", body)
        else:
            body = re.sub(r"csrf_token=[^&]*", token, body)
        route.continue_(post_data=body)

    page.route(url, handle)
    try:
        yield
    finally:
        page.unroute(url, handle)


def assert_not_found(response: Response | None, page: Page) -> None:
    assert response is not None
    assert response.status == 404, response.url
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


# --- isolation -------------------------------------------------------------------------


def test_another_user_sees_none_of_the_first_users_sessions(
    agent: LiveServer, owner: Owner, scripts: Scripts, page: Page, page_errors: PageErrors
) -> None:
    expect_refusals(page_errors, 404)
    before = session_of(agent, owner)
    intruder = new_key(agent, "intruder")
    sign_in(page, agent.url, intruder)
    expect(page.locator("li.session-row")).to_have_count(0)
    page.goto(f"{agent.url}/?archived=all")
    expect(page.locator("li.session-row")).to_have_count(0)
    expect(page.locator("#no-sessions")).to_be_visible()

    sid = owner.session_id
    for path in (
        f"/session/{sid}",
        f"/session/{sid}/patch",
        f"/session/{sid}/changes",
        f"/session/{sid}/live/activities",
        f"/session/{sid}/live/session",
        f"/session/{MISSING_SESSION_ID}",
        "/session/not-an-id",
    ):
        assert_not_found(page.goto(f"{agent.url}{path}"), page)
    # The owner opens them all.
    with owner.api(agent) as client:
        assert client.get(f"/sessions/{sid}").status_code == 200

    # Their buttons, posted with the intruder's own valid token: 404, and nothing changes.
    page.goto(f"{agent.url}/")
    token = csrf_token(page)
    for button in (
        "approve",
        "pause",
        "resume",
        "cancel",
        "archive",
        "unarchive",
        "message",
        "delete",
    ):
        response = page.request.post(
            f"{agent.url}/session/{sid}/{button}",
            form={"csrf_token": token, "message": "Give me your code"},
            max_redirects=0,
        )
        assert response.status == 404, (button, response.status)
        assert "Not found" in response.text()
    assert session_of(agent, owner) == before

    # The intruder's live list hears none of the owner's sessions: the owner's new one
    # never shows, the intruder's own (created after it) does.
    theirs_prompt = scripts.add(f"Owner's later session {secrets.token_hex(3)}", PARKED)
    mine_prompt = scripts.add(f"Intruder's own session {secrets.token_hex(3)}", PARKED)
    with no_reload(page):
        with owner.api(agent) as client:
            theirs = start(client, theirs_prompt, require_plan_approval=True)
        with api_client(agent.api, intruder) as client:
            mine = start(client, mine_prompt, require_plan_approval=True)
            wait_for_state(client, mine, {"AWAITING_PLAN_APPROVAL"} | TERMINAL)
        expect(row_badge(page, mine)).to_have_text(
            re.compile(r"Awaiting plan approval$"), timeout=LIVE_TIMEOUT_MS
        )
        expect(page.locator(f"#session-{theirs}")).to_have_count(0)
        expect(page.locator("li.session-row")).to_have_count(1)


# --- signing in and out ----------------------------------------------------------------


def session_cookie(page: Page) -> dict[str, Any] | None:
    found = [c for c in page.context.cookies() if c["name"] == COOKIE]
    return dict(found[0]) if found else None


def test_the_session_cookie_is_http_only_and_same_site_lax(
    agent: LiveServer, api_key: str, page: Page
) -> None:
    sign_in(page, agent.url, api_key)
    cookie = session_cookie(page)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # served over http here; Secure over https
    assert cookie["path"] == "/"
    assert COOKIE not in page.evaluate("document.cookie")  # no script can read it


def test_a_wrong_key_shows_an_error_and_sets_no_cookie(
    agent: LiveServer, api_key: str, page: Page, page_errors: PageErrors
) -> None:
    expect_refusals(page_errors, 401)
    for wrong in (api_key + "x", "ojk_000000000000_nope"):
        page.goto(f"{agent.url}/sign-in")
        page.get_by_label("API key").fill(wrong)
        with page.expect_response(f"{agent.url}/sign-in") as answer:
            page.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 401
        expect(page.get_by_role("alert")).to_contain_text("not valid")
        assert session_cookie(page) is None
        response = page.goto(f"{agent.url}/")
        assert response is not None
        assert re.search(r"/sign-in\?next=", page.url)


def test_sign_out_ends_the_session_and_its_old_cookie_opens_nothing(
    agent: LiveServer, scripts: Scripts, api_key: str, new_page: NewPage, page_errors: PageErrors
) -> None:
    # A page left open in another tab loses its live stream (it reconnects to sign in).
    page_errors.allow(r"^EventSource.s response has a MIME type \(.text/html.\)")
    with api_client(agent.api, api_key) as client:
        sid = start(
            client,
            scripts.add(f"Sign out {secrets.token_hex(3)}", PARKED),
            require_plan_approval=True,
        )
        wait_for_state(client, sid, {"AWAITING_PLAN_APPROVAL"} | TERMINAL)
    page = new_page()
    sign_in(page, agent.url, api_key)
    other_tab = page.context.new_page()
    other_tab.goto(f"{agent.url}/")
    expect(other_tab.locator(f"#session-{sid}")).to_be_visible()
    page.goto(f"{agent.url}/session/{sid}")
    old = session_cookie(page)
    token = csrf_token(page)
    assert old is not None

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{agent.url}/sign-in")
    expect(page.get_by_label("API key")).to_be_visible()
    assert session_cookie(page) is None
    page.goto(f"{agent.url}/session/{sid}")
    assert "/sign-in?next=" in page.url

    # The other tab hears nothing more: not the session's archive, not a new session.
    with api_client(agent.api, api_key) as client:
        assert client.post(f"/sessions/{sid}:archive").status_code == 200
        later = start(
            client,
            scripts.add(f"After sign-out {secrets.token_hex(3)}", PARKED),
            require_plan_approval=True,
        )
        wait_for_state(client, later, {"AWAITING_PLAN_APPROVAL"} | TERMINAL)
    other_tab.wait_for_timeout(1000)
    expect(other_tab.locator(f"#session-{sid}")).to_be_visible()
    expect(other_tab.locator(f"#session-{later}")).to_have_count(0)
    # ...and says so, rather than looking live.
    expect(other_tab.get_by_role("status").filter(has_text="Live updates stopped")).to_be_visible()

    # The cookie's value, kept by someone, is worth nothing now.
    stolen = new_page()
    stolen.context.add_cookies([{"name": COOKIE, "value": old["value"], "url": agent.url}])
    for path in ("/", f"/session/{sid}", f"/session/{sid}/patch"):
        stolen.goto(f"{agent.url}{path}")
        assert "/sign-in?next=" in stolen.url, path
        expect(stolen.get_by_label("API key")).to_be_visible()
    posted = stolen.request.post(
        f"{agent.url}/session/{sid}/unarchive", form={"csrf_token": token}, max_redirects=0
    )
    assert posted.status == 303
    assert posted.headers["location"].startswith("/sign-in")
    with api_client(agent.api, api_key) as client:
        assert client.get(f"/sessions/{sid}").json()["archived"] is True


def test_revoking_the_api_key_ends_the_web_session_too(
    agent: LiveServer, scripts: Scripts, page: Page, page_errors: PageErrors
) -> None:
    expect_refusals(page_errors, 401)
    # The open page's live stream ends; its reconnection is sent to sign in.
    page_errors.allow(r"^EventSource.s response has a MIME type \(.text/html.\)")
    name = f"revoked-{secrets.token_hex(4)}"
    key = off_loop(provision_user, agent.settings, name=name)
    sign_in(page, agent.url, key)
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    off_loop(revoke_key, agent.settings, key)

    # The open page hears nothing more of the user's sessions (here: one started with
    # another key of theirs).
    prompt = scripts.add(f"After the revocation {secrets.token_hex(3)}", PARKED)
    with api_client(agent.api, off_loop(provision_user, agent.settings, name=name)) as client:
        later = start(client, prompt, require_plan_approval=True)
        wait_for_state(client, later, {"AWAITING_PLAN_APPROVAL"} | TERMINAL)
    page.wait_for_timeout(1500)
    expect(page.locator(f"#session-{later}")).to_have_count(0)

    page.reload()
    assert "/sign-in?next=" in page.url
    # The key cannot open a new one; the old cookie stays worthless.
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.goto(f"{agent.url}/session/{later}")
    assert "/sign-in?next=" in page.url


# --- CSRF and the API ------------------------------------------------------------------


def test_forms_without_the_right_token_or_from_another_site_are_refused(
    agent: LiveServer, owner: Owner, page: Page, browser: Browser, page_errors: PageErrors
) -> None:
    expect_refusals(page_errors, 403)
    before = session_of(agent, owner)
    sid = owner.session_id
    sign_in(page, agent.url, owner.key)
    page.goto(f"{agent.url}/session/{sid}")
    token = csrf_token(page)

    # In the browser: the Archive button's post with its token left out, then replaced.
    for tamper in (r"(^|&)csrf_token=[^&]*", "csrf_token=forged"):
        page.goto(f"{agent.url}/session/{sid}")
        url = f"{agent.url}/session/{sid}/archive"
        with tampered(page, url, tamper), page.expect_response(url) as answer:
            page.get_by_role("button", name="Archive", exact=True).click()
        assert answer.value.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

    # Another site's page with a form aimed at the Archive button, even holding the
    # right token: from a sibling origin the cookie goes along but the Origin is refused;
    # from another site the SameSite=Lax cookie stays behind, so the post is not signed in.
    archive = f"{agent.url}/session/{sid}/archive"
    trap = (
        f'<form method="post" action="{archive}">'
        f'<input type="hidden" name="csrf_token" value="{token}">'
        "<button>Claim your prize</button></form>"
    )
    for attacker, status in (("http://127.0.0.1:1/prize", 403), ("http://evil.example/", 303)):
        page.route(attacker, serve(trap))
        page.goto(attacker)
        with page.expect_response(archive) as answer:
            page.get_by_role("button", name="Claim your prize").click()
        assert answer.value.status == status, attacker
        if status == 303:
            assert answer.value.headers["location"].startswith("/sign-in")
        else:
            expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

    # Posted straight: no token, a wrong one, another user's-style token, or the right
    # token from another site's page.
    attempts: list[tuple[dict[str, str | float | bool], dict[str, str]]] = [
        ({}, {}),
        ({"csrf_token": ""}, {}),
        ({"csrf_token": "forged"}, {}),
        ({"csrf_token": token + "x"}, {}),
        ({"csrf_token": token}, {"Origin": "http://evil.example"}),
        ({"csrf_token": token}, {"Origin": "http://127.0.0.1:1"}),
    ]
    for button in ("archive", "delete", "cancel", "message"):
        for form, headers in attempts:
            response = page.request.post(
                f"{agent.url}/session/{sid}/{button}",
                form={**form, "message": "Do something else"},
                headers=headers,
                max_redirects=0,
            )
            assert response.status == 403, (button, form, headers, response.status)
            assert "Not allowed" in response.text()
    for form, headers in attempts:
        response = page.request.post(
            f"{agent.url}/new",
            form={**form, "prompt": "Forged", "source": ""},
            headers=headers,
            max_redirects=0,
        )
        assert response.status == 403
        response = page.request.post(
            f"{agent.url}/sign-out", form=form, headers=headers, max_redirects=0
        )
        assert response.status == 403
    assert session_of(agent, owner) == before
    with owner.api(agent) as client:
        assert [
            s["id"] for s in client.get("/sessions").json()["sessions"] if s["prompt"] == "Forged"
        ] == []
    # Still signed in (the refused sign-out did nothing); the right token works.
    page.goto(f"{agent.url}/session/{sid}")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # The sign-in form has its own token: without it (or from elsewhere) it is refused too.
    anonymous = browser.new_context()
    try:
        refused = anonymous.request.post(
            f"{agent.url}/sign-in", form={"api_key": owner.key}, max_redirects=0
        )
        assert refused.status == 403
        assert not [c for c in anonymous.cookies() if c["name"] == COOKIE]
    finally:
        anonymous.close()


def test_the_cookie_never_opens_the_api(
    agent: LiveServer, owner: Owner, page: Page, page_errors: PageErrors
) -> None:
    expect_refusals(page_errors, 401)
    sign_in(page, agent.url, owner.key)
    sid = owner.session_id
    calls = [
        ("GET", "/sessions"),
        ("GET", f"/sessions/{sid}"),
        ("GET", f"/sessions/{sid}/activities"),
        ("GET", "/sources"),
        ("POST", f"/sessions/{sid}:archive"),
        ("POST", "/sessions"),
    ]
    for method, path in calls:
        response = page.request.fetch(
            f"{agent.api}{path}",
            method=method,
            data={"prompt": "From the cookie"}
            if path == "/sessions" and method == "POST"
            else None,
        )
        assert response.status == 401, (method, path, response.status)
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    # From the page itself, too (a script of the page would get the same).
    status = page.evaluate(
        "url => fetch(url, {credentials: 'include'}).then(r => r.status)",
        f"{agent.api}/sessions",
    )
    assert status == 401
    assert session_of(agent, owner).get("archived", False) is False


# --- markup shows as text --------------------------------------------------------------

# Each would run (or open a dialog, or set window.__xss) if it reached the page as markup.
TITLE = '<script>window.__xss="title"</script><img src=x onerror=alert("title")>'
STEP = '<img src=x onerror=alert("step")> step'
MESSAGE = 'Note <script>window.__xss="message"</script><img src=x onerror=alert("message")>'
FILE = '<img src=x onerror=alert("file")>.txt'
FILE_TEXT = '<script>window.__xss="content"</script>\n'
DONE = '<svg onload=alert("done")>Wrote the file'
QUESTION = 'Which? <svg onload=alert("question")><script>window.__xss="question"</script>'
ANSWER = '<img src=x onerror=alert("answer")> this one'
# A branch name may hold < > = ( ) " but no space: a slash separates the attribute.
BRANCH = 'xss-<svg/onload=alert("branch")>'
INJECTED = (
    "img[src=x], svg[onload], [onerror], [onload], script:not([src]):not([type='application/json'])"
)


def watch_dialogs(page: Page) -> list[str]:
    """The messages of the dialogs (alert, confirm...) the page opens, each dismissed."""
    dialogs: list[str] = []

    def opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", opened)
    return dialogs


def assert_inert(page: Page, dialogs: list[str]) -> None:
    """Nothing the payloads carry became markup or ran."""
    assert dialogs == []
    assert page.locator(INJECTED).count() == 0
    assert page.evaluate("() => window.__xss === undefined")


@pytest.fixture(scope="module")
def xss_source(agent: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = make_repo(
        tmp_path_factory.mktemp("xss-repo"), {"README.md": "# demo\n"}, branches=(BRANCH,)
    )
    return local_source(agent, repo, "markup")


def test_markup_from_users_and_the_agent_shows_as_text_served_and_live(
    agent: LiveServer, scripts: Scripts, xss_source: str, api_key: str, page: Page
) -> None:
    dialogs = watch_dialogs(page)
    prompt = f"{TITLE} {secrets.token_hex(3)}\nAnd <b>more</b> of the prompt."
    title = prompt.splitlines()[0]
    scripts.add(
        prompt,
        [
            call("propose_plan", steps=[{"title": STEP, "description": MESSAGE}]),
            call("message_user", text=MESSAGE),
            call("write_file", path=FILE, content=FILE_TEXT),
            call("complete_step", title=DONE, description=MESSAGE),
            call("ask_user", text=QUESTION),
            call("finish", summary="Done.", commit_message="Add the file"),
        ],
    )

    # The new-session form, with the branch chosen in the browser.
    sign_in(page, agent.url, api_key)
    page.goto(f"{agent.url}/new")
    page.get_by_label("Repository").select_option(label="acme/markup")
    page.get_by_label("Branch").select_option(value=BRANCH)
    expect(page.get_by_label("Branch")).to_contain_text(BRANCH)
    assert_inert(page, dialogs)
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Require plan approval").check()
    page.get_by_role("button", name="Start session").click()
    expect(page).to_have_url(re.compile(r"/session/\d+$"))
    sid = session_id_of(page)

    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("#session-header .branch").first).to_have_text(BRANCH)
    expect(page.locator(".prompt-box")).to_contain_text("And <b>more</b> of the prompt.")
    expect(state_badge(page)).to_contain_text("Awaiting plan approval", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("ol.plan-steps")).to_contain_text(STEP)
    assert_inert(page, dialogs)
    assert page.title().startswith(title)

    # Approved elsewhere while the page is open: everything after arrives live.
    with no_reload(page), api_client(agent.api, api_key) as client:
        assert client.post(f"/sessions/{sid}:approvePlan").status_code == 200
        question = page.locator("#timeline li.question")
        expect(question).to_contain_text(QUESTION, timeout=LIVE_TIMEOUT_MS)
        timeline = page.locator("#timeline")
        expect(timeline).to_contain_text(MESSAGE)
        expect(timeline).to_contain_text(DONE)
        expect(page.locator("ul.changed-files")).to_contain_text(FILE)
        expect(page.locator("#changes")).to_contain_text(FILE_TEXT.strip())
        assert_inert(page, dialogs)

    # The answer, through the page's form; the session completes live.
    page.get_by_label("Message").fill(ANSWER)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#timeline li.user-message").last).to_contain_text(ANSWER)
    with no_reload(page):
        expect(state_badge(page)).to_contain_text("Completed", timeout=LIVE_TIMEOUT_MS)
        expect(page.locator("ul.changed-files")).to_contain_text(FILE)
        assert_inert(page, dialogs)

    # Served: the same, from the server's render.
    page.reload()
    for text in (MESSAGE, DONE, QUESTION, ANSWER, STEP):
        expect(page.locator("#timeline")).to_contain_text(text)
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("ul.changed-files")).to_contain_text(FILE)
    expect(page.locator("#changes")).to_contain_text(FILE_TEXT.strip())
    assert_inert(page, dialogs)

    # The sessions list: title and branch as text.
    page.goto(f"{agent.url}/")
    row = page.locator(f"#session-{sid}")
    expect(row.get_by_role("link")).to_have_text(title)
    expect(row.locator(".branch")).to_have_text(BRANCH)
    assert_inert(page, dialogs)

    # The patch downloads exactly as written, named by the session.
    with api_client(agent.api, api_key) as client:
        session = client.get(f"/sessions/{sid}").json()
    assert session["title"] == title
    patch = session["outputs"][0]["changeSet"]["gitPatch"]["unidiffPatch"]
    assert [f.path for f in split_patch(patch)] == [FILE]
    downloaded = page.request.get(f"{agent.url}/session/{sid}/patch")
    assert downloaded.text() == patch


def test_a_title_given_through_the_api_shows_as_text_live_in_the_list(
    agent: LiveServer, scripts: Scripts, api_key: str, page: Page
) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, agent.url, api_key)
    prompt = scripts.add(f"Titled {secrets.token_hex(3)}", PARKED)
    with no_reload(page), api_client(agent.api, api_key) as client:
        sid = start(client, prompt, title=TITLE, require_plan_approval=True)
        row = page.locator(f"#session-{sid}")
        expect(row.get_by_role("link")).to_have_text(TITLE, timeout=LIVE_TIMEOUT_MS)
        expect(row_badge(page, sid)).to_contain_text(
            "Awaiting plan approval", timeout=LIVE_TIMEOUT_MS
        )
        assert_inert(page, dialogs)
    page.get_by_role("link", name=TITLE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    assert_inert(page, dialogs)


# --- CSP -------------------------------------------------------------------------------


def script_sources(policy: str) -> list[str]:
    """The sources script-src allows (default-src's when it has none)."""
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives.get("script-src", directives.get("default-src", ["*"]))


def test_every_page_has_a_csp_without_inline_scripts_and_no_console_errors(
    agent: LiveServer, owner: Owner, new_page: NewPage, page_errors: PageErrors
) -> None:
    expect_refusals(page_errors, 403, 404)
    page = new_page()
    documents: list[Response] = []
    page.on(
        "response", lambda r: documents.append(r) if r.request.resource_type == "document" else None
    )
    page.goto(f"{agent.url}/sign-in")
    sign_in(page, agent.url, owner.key)
    sid = owner.session_id
    for path in (
        "/",
        "/?archived=all&state=COMPLETED&q=notes",
        "/new",
        f"/session/{sid}",
        "/sources",
        "/keys",
        "/webhooks",
        f"/session/{MISSING_SESSION_ID}",
    ):
        page.goto(f"{agent.url}{path}")
    # The 403 page of a refused form.
    page.goto(f"{agent.url}/session/{sid}")
    with tampered(page, f"{agent.url}/session/{sid}/archive", "csrf_token=forged"):
        page.get_by_role("button", name="Archive", exact=True).click()
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

    seen = {(r.url.removeprefix(agent.url), r.status) for r in documents}
    assert {
        (f"/session/{MISSING_SESSION_ID}", 404),
        (f"/session/{sid}/archive", 403),
        ("/sign-in", 200),
        ("/", 200),
        ("/new", 200),
        (f"/session/{sid}", 200),
        ("/sources", 200),
        ("/keys", 200),
        ("/webhooks", 200),
    } <= seen
    for response in documents:
        policy = response.headers.get("content-security-policy", "")
        assert policy, f"{response.url} has no Content-Security-Policy"
        sources = script_sources(policy)
        for loose in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:"):
            assert loose not in sources, policy
        assert response.headers.get("x-content-type-options") == "nosniff"
