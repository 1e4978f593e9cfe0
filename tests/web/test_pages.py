"""The web app over plain HTTP, on both databases: sign-in and its cookie, the security
headers, the forms and their errors, the lists and their filters, the patch download and
the live events' HTML. (What needs JavaScript is in the browser tests.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.testing import LiveServer
from tests import driver
from tests.api.session_support import add_source
from tests.support import api_client, ok_json
from tests.web.http_support import csrf_token, sign_in

PATCH = """\
diff --git a/README.md b/README.md
index 1111111..2222222 100644
--- a/README.md
+++ b/README.md
@@ -1 +1,2 @@
 # demo
+A <script>window.owned = 1</script> line
"""


@pytest.fixture
def web(server: LiveServer, api_key: str) -> Iterator[tuple[httpx.Client, str]]:
    client, token = sign_in(server, api_key)
    try:
        yield client, token
    finally:
        client.close()


@pytest.fixture
def api(server: LiveServer, api_key: str) -> Iterator[httpx.Client]:
    with api_client(server.api, api_key) as client:
        yield client


def _create(api: httpx.Client, source: str | None, prompt: str) -> dict[str, object]:
    body: dict[str, object] = {"prompt": prompt}
    if source:
        body["sourceContext"] = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
    return ok_json(api.post("/sessions", json=body))


def test_pages_ask_to_sign_in_first(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        for path in ("/", "/new", "/session/1234567890123456789"):
            response = anonymous.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == f"/sign-in?next={path}"


def test_signing_in_sets_a_session_cookie_the_api_ignores(server: LiveServer, api_key: str) -> None:
    with httpx.Client(base_url=server.url) as browser:
        form = browser.get("/sign-in")
        response = browser.post(
            "/sign-in",
            data={"api_key": api_key, "csrf_token": csrf_token(form.text), "next": "//evil.test/"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/"  # never to another site
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("openjules_session=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        assert "secure" not in flags  # served over http here; over https it is Secure
        assert api_key not in cookie
        assert browser.get("/").status_code == 200
        # The cookie opens the web app only: the API wants an API key.
        refused = browser.get("/v1alpha/sessions")
        assert refused.status_code == 401
        assert refused.json()["error"]["status"] == "UNAUTHENTICATED"


def test_a_wrong_key_is_refused_with_a_message(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as browser:
        form = browser.get("/sign-in")
        response = browser.post(
            "/sign-in", data={"api_key": "ojk_nope_nope", "csrf_token": csrf_token(form.text)}
        )
        assert response.status_code == 401
        assert "That API key is not valid" in response.text
        assert "openjules_session" not in browser.cookies
        # A sign-in form without its token (posted from elsewhere) is refused outright.
        forged = httpx.post(f"{server.url}/sign-in", data={"api_key": "x", "csrf_token": "y"})
        assert forged.status_code == 403


def test_every_page_carries_the_security_headers(web: tuple[httpx.Client, str]) -> None:
    client, _ = web
    for path in ("/", "/new", "/sign-in", "/session/1234567890123456789"):
        headers = client.get(path, follow_redirects=True).headers
        policy = headers["content-security-policy"]
        script_src = next(p for p in policy.split(";") if p.strip().startswith("script-src"))
        assert script_src.split() == ["script-src", "'self'"]
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"


def test_a_session_url_opens_its_page(
    server: LiveServer, git_repo: Path, api: httpx.Client, web: tuple[httpx.Client, str]
) -> None:
    client, _ = web
    session = _create(api, add_source(server, git_repo), "Tidy <b>the</b> README")
    url = str(session["url"])
    assert url == f"{server.url}/session/{session['id']}"
    page = client.get(url)
    assert page.status_code == 200
    assert "<h1>Tidy &lt;b&gt;the&lt;/b&gt; README</h1>" in page.text
    assert "acme/demo" in page.text
    assert "Queued" in page.text


def test_unknown_and_malformed_sessions_are_a_not_found_page(web: tuple[httpx.Client, str]) -> None:
    client, token = web
    for path in ("/session/1234567890123456789", "/session/not-an-id", "/session/1/patch"):
        response = client.get(path)
        assert response.status_code == 404
        assert "<h1>Not found</h1>" in response.text
    pressed = client.post("/session/1234567890123456789/pause", data={"csrf_token": token})
    assert pressed.status_code == 404


def test_the_new_session_form_keeps_what_was_typed_when_refused(
    server: LiveServer, git_repo: Path, web: tuple[httpx.Client, str]
) -> None:
    client, token = web
    source = add_source(server, git_repo)
    form = client.get("/new").text
    assert 'value="main" selected' in form  # the default branch is chosen
    for branch in ("develop", "feature/x"):
        assert f'value="{branch}"' in form
    empty = client.post("/new", data={"csrf_token": token, "source": source, "prompt": " "})
    assert empty.status_code == 400
    assert "The prompt is required." in empty.text
    bad_branch = client.post(
        "/new",
        data={"csrf_token": token, "source": source, "branch": "nope", "prompt": "Keep <me>"},
    )
    assert bad_branch.status_code == 400
    assert "Branch &#39;nope&#39; does not exist" in bad_branch.text
    assert "Keep &lt;me&gt;</textarea>" in bad_branch.text


def test_new_sessions_start_with_the_chosen_options(
    server: LiveServer, git_repo: Path, api: httpx.Client, web: tuple[httpx.Client, str]
) -> None:
    client, token = web
    source = add_source(server, git_repo)
    started = client.post(
        "/new",
        data={
            "csrf_token": token,
            "source": source,
            "branch": "develop",
            "prompt": "Add a changelog",
            "require_plan_approval": "on",
            "auto_pr": "on",
        },
    )
    assert started.status_code == 303
    session_id = started.headers["location"].removeprefix("/session/")
    session = ok_json(api.get(f"/sessions/{session_id}"))
    assert session["sourceContext"]["githubRepoContext"]["startingBranch"] == "develop"
    assert session["title"] == "Add a changelog"
    repoless = client.post(
        "/new", data={"csrf_token": token, "source": "", "prompt": "Write a haiku"}
    )
    repoless_id = repoless.headers["location"].removeprefix("/session/")
    assert "sourceContext" not in ok_json(api.get(f"/sessions/{repoless_id}"))
    assert "No repository" in client.get(f"/session/{repoless_id}").text


def test_the_sessions_page_filters_searches_and_pages(
    server: LiveServer, api: httpx.Client, web: tuple[httpx.Client, str]
) -> None:
    client, _ = web
    ids = [str(_create(api, None, f"Task number {i}")["id"]) for i in range(27)]
    special = str(_create(api, None, "Rename the widget 100%_done")["id"])
    ok_json(api.post(f"/sessions/{ids[0]}:archive", json={}))
    first = client.get("/").text
    assert first.count('class="session-row"') == 25
    assert f'id="session-{special}"' in first  # newest first
    assert 'rel="next"' in first
    rest = client.get("/", params={"page": _next_page(first)}).text
    assert rest.count('class="session-row"') == 2  # 28 sessions, one archived
    assert f'id="session-{ids[0]}"' not in first + rest
    archived = client.get("/", params={"archived": "only"}).text
    assert archived.count('class="session-row"') == 1
    assert f'id="session-{ids[0]}"' in archived
    assert (
        client.get("/", params={"archived": "all", "q": "TASK number 1"}).text.count(
            'class="session-row"'
        )
        == 11
    )  # 1, 10..19, the archived 0 not matching
    # Search is literal: % and _ match only themselves.
    found = client.get("/", params={"q": "100%_"}).text
    assert found.count('class="session-row"') == 1
    assert f'id="session-{special}"' in found
    assert client.get("/", params={"q": "1_0"}).text.count('class="session-row"') == 0
    queued = client.get("/", params={"state": "QUEUED"}).text.count('class="session-row"')
    assert queued == 25
    assert "Next page" in client.get("/", params={"state": "QUEUED"}).text
    assert client.get("/", params={"state": "COMPLETED"}).text.count('class="session-row"') == 0


def _next_page(html: str) -> str:
    start = html.index('href="/?', html.index("Next page") - 200)
    link = html[start + 6 : html.index('"', start + 6)]
    return httpx.URL(link.replace("&amp;", "&")).params["page"]


def test_the_patch_downloads_exactly_and_the_changes_list_its_files(
    server: LiveServer, git_repo: Path, api: httpx.Client, web: tuple[httpx.Client, str]
) -> None:
    client, _ = web
    session_id = str(_create(api, add_source(server, git_repo), "Say more")["id"])
    settings = server.settings
    driver.propose_plan(settings, session_id, steps=["Edit"], require_approval=False)
    driver.complete(settings, session_id, patch=PATCH, base_commit="0" * 40)
    download = client.get(f"/session/{session_id}/patch")
    assert download.status_code == 200
    assert download.text == PATCH
    assert download.headers["content-type"].startswith("text/x-diff")
    assert download.headers["content-disposition"] == (
        f'attachment; filename="session-{session_id}.patch"'
    )
    page = client.get(f"/session/{session_id}").text
    changes = client.get(f"/session/{session_id}/changes").text
    for html in (page, changes):
        assert "<code>README.md</code>" in html
        assert "+1</span>" in html
        assert "\u22120</span>" in html
        assert "Download patch" in html
        assert "<script>window.owned" not in html
        assert "&lt;script&gt;window.owned = 1&lt;/script&gt;" in html


def test_live_events_are_escaped_html(
    server: LiveServer, api: httpx.Client, web: tuple[httpx.Client, str]
) -> None:
    client, _ = web
    session_id = str(_create(api, None, "Watch me")["id"])
    settings = server.settings
    with client.stream("GET", f"/session/{session_id}/live/activities?after=") as stream:
        assert stream.headers["content-type"] == "text/event-stream"
        driver.propose_plan(
            settings, session_id, steps=["<img src=x onerror=alert(1)>"], require_approval=True
        )
        seen = ""
        for line in stream.iter_lines():
            seen += line + "\n"
            if 'class="plan-steps"' in seen and line == "":
                break
    assert "event: activity" in seen
    assert "&lt;img src=x onerror=alert(1)&gt;" in seen
    assert "<img src=x" not in seen


def test_a_browser_asking_for_a_missing_page_gets_a_page(server: LiveServer) -> None:
    html = {"accept": "text/html,application/xhtml+xml"}
    with httpx.Client(base_url=server.url) as browser:
        page = browser.get("/no/such/page", headers=html)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "<h1>Not found</h1>" in page.text
        assert "content-security-policy" in page.headers
        # The API's paths answer its clients with the JSON envelope, whatever they accept.
        for path in ("/v1alpha/nothing", "/no/such/page"):
            headers = html if path.startswith("/v1alpha") else {}
            answer = browser.get(path, headers=headers)
            assert answer.status_code == 404
            assert answer.json()["error"]["status"] == "NOT_FOUND"


def test_form_text_reaches_the_agent_as_api_clients_send_it(
    api: httpx.Client, web: tuple[httpx.Client, str]
) -> None:
    """A browser posts a textarea's line breaks as CRLF; stored, they are LF."""
    client, token = web
    started = client.post(
        "/new", data={"csrf_token": token, "source": "", "prompt": "Line one\r\nLine two"}
    )
    session_id = started.headers["location"].removeprefix("/session/")
    assert ok_json(api.get(f"/sessions/{session_id}"))["prompt"] == "Line one\nLine two"
    client.post(
        f"/session/{session_id}/message",
        data={"csrf_token": token, "message": "Also\r\nthis"},
    )
    listed = ok_json(api.get(f"/sessions/{session_id}/activities"))["activities"]
    assert [a["userMessaged"]["userMessage"] for a in listed if "userMessaged" in a] == [
        "Also\nthis"
    ]
