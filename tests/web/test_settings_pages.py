"""The Sources, API keys and Webhooks pages over HTTP, on both backends: what each lists
(and only the signed-in user's own), keys created (shown once, working on the API) and
revoked (refused by the API; revoking this browser's key signs it out), webhooks created
(secret shown once), refused (form kept), deleted and their deliveries; escaping; CSRF.
One browser test: the Copy button puts a new key in the clipboard.

The browser is up from that test to the module's end, so helpers that run an event loop
(provision_user, run_write) always go through ``off_loop``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.settings import Settings
from openjules.store import sources
from openjules.store.oneshot import run_write
from openjules.store.sources import SourceRecord
from openjules.testing import LiveServer, WebhookReceiver, provision_user
from tests.conftest import drop_database, fresh_database
from tests.support import api_client, ok_json
from tests.web.browser_support import off_loop, save_screenshot
from tests.web.http_support import csrf_token, sign_in, signed_in
from tests.webhook_support import RETRY_SCHEDULE, wait_for_deliveries

EVENT_TYPES = [
    "session.created",
    "session.state_changed",
    "session.completed",
    "session.failed",
    "activity.created",
    "pull_request.opened",
    "webhook.test",
]


# --- a little DOM, enough to find elements and read their text --------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    def all(self, tag: str = "", **attrs: str) -> list[Node]:
        """Descendants with ``tag`` (any if empty) whose attributes hold ``attrs``
        (``class_`` matches one class among several)."""
        found: list[Node] = []
        for child in self.children:
            if isinstance(child, str):
                continue
            if child.matches(tag, attrs):
                found.append(child)
            found.extend(child.all(tag, **attrs))
        return found

    def one(self, tag: str = "", **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag or '*'} {attrs}> elements"
        return found[0]

    def matches(self, tag: str, attrs: dict[str, str]) -> bool:
        if tag and self.tag != tag:
            return False
        for name, value in attrs.items():
            if name == "class_":
                if value not in self.attrs.get("class", "").split():
                    return False
            elif self.attrs.get(name) != value:
                return False
        return True

    def by_id(self, element_id: str) -> Node:
        return self.one(id=element_id)

    def buttons(self) -> list[str]:
        return [b.text for b in self.all("button")] + [s.text for s in self.all("summary")]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(response: httpx.Response) -> Node:
    builder = _Builder()
    builder.feed(response.text)
    builder.close()
    return builder.root


def main_of(response: httpx.Response) -> Node:
    return dom(response).one("main")


# --- posting forms, users ---------------------------------------------------------------


def post_form(
    client: httpx.Client, path: str, data: dict[str, Any] | None = None, *, page: str = "/keys"
) -> httpx.Response:
    """POST a form the way the page does: with the session's token from ``page``."""
    token = csrf_token(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def new_key(server: LiveServer, name: str) -> str:
    return off_loop(provision_user, server.settings, name=name)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def secret_on(response: httpx.Response) -> str:
    return main_of(response).by_id("new-secret").attrs["value"]


def key_rows(response: httpx.Response) -> dict[str, Node]:
    """The keys listed, by prefix (``ojk_<id>_``)."""
    rows = main_of(response).all("tr", class_="key-row")
    return {row.one("th").text.rstrip("…"): row for row in rows}


def prefix_of(secret: str) -> str:
    return "_".join(secret.split("_")[:2]) + "_"


def api_status(server: LiveServer, key: str) -> int:
    with api_client(server.api, key) as api:
        return api.get("/sessions").status_code


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(server_settings: Settings) -> Iterator[LiveServer]:
    """The receiver is on 127.0.0.1: private targets are allowed here."""
    settings = server_settings.model_copy(
        update={"webhooks_allow_private": True, "webhook_retry_schedule": RETRY_SCHEDULE}
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def hook_url(receiver: WebhookReceiver) -> str:
    receiver.answer(200)
    return f"{receiver.url}/{secrets.token_hex(4)}"


@pytest.fixture
def web(server: LiveServer, api_key: str) -> Iterator[httpx.Client]:
    """A browser signed in as the test's own user (``api_key``)."""
    with signed_in(server, api_key) as client:
        yield client


# --- every page -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/sources", "/keys", "/webhooks", "/webhooks/" + "0" * 32])
def test_the_pages_need_a_signed_in_user(server: LiveServer, path: str) -> None:
    response = httpx.get(server.url + path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/sign-in?next={path}"


@pytest.mark.parametrize(
    ("path", "active", "heading"),
    [
        ("/sources", "Sources", "Sources"),
        ("/keys", "API keys", "API keys"),
        ("/webhooks", "Webhooks", "Webhooks"),
    ],
)
def test_each_page_is_marked_in_the_navigation(
    web: httpx.Client, path: str, active: str, heading: str
) -> None:
    response = web.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page = dom(response)
    assert [a.text for a in page.one("nav", class_="nav").all("a", **{"aria-current": "page"})] == [
        active
    ]
    assert page.one("main").one("h1").text == heading


# --- sources ----------------------------------------------------------------------------


def test_sources_lists_every_source_read_only(server: LiveServer, web: httpx.Client) -> None:
    owner = unique("team")
    records = [
        SourceRecord(
            owner=owner,
            repo="private-app",
            url="/nowhere/a",
            is_private=True,
            default_branch="main",
            branches=["main", "develop", "feature/<b>"],
            setup_script="pip install -e .",
            network_allowed=True,
        ),
        SourceRecord(
            owner=owner,
            repo="open-lib",
            url="/nowhere/b",
            is_private=False,
            default_branch="trunk",
            branches=["trunk"],
        ),
    ]

    async def store(conn: AsyncConnection) -> None:
        for record in records:
            await sources.upsert(conn, record=record)

    off_loop(run_write, server.settings.resolved_database_url(), store)
    # Sources are the instance's: another user sees them as well.
    with signed_in(server, new_key(server, unique("viewer"))) as other:
        pages = [client.get("/sources") for client in (web, other)]
    for response in pages:
        assert response.status_code == 200
        main = main_of(response)
        private = main.by_id(f"source-{owner}-private-app")
        cells = [c.text for c in private.all("td")]
        assert private.one("th").text == f"{owner}/private-app"
        assert cells[0] == "Private"
        assert cells[1] == "main"
        assert [li.text for li in private.all("li")] == ["main", "develop", "feature/<b>"]
        assert cells[3:] == ["Setup script: yes", "Network allowed"]
        public = main.by_id(f"source-{owner}-open-lib")
        cells = [c.text for c in public.all("td")]
        assert public.one("th").text == f"{owner}/open-lib"
        assert cells == ["Public", "trunk", "trunk", "Setup script: no", "No network"]
        # Read-only: no form but the header's "Sign out".
        assert main.all("form") == []
    assert "feature/&lt;b&gt;" in pages[0].text


# --- API keys ---------------------------------------------------------------------------


def test_keys_lists_only_my_keys(server: LiveServer) -> None:
    name = unique("keys")
    first = new_key(server, name)
    second = new_key(server, name)  # never used
    theirs = new_key(server, unique("them"))
    with signed_in(server, first) as web:
        response = web.get("/keys")
    rows = key_rows(response)
    assert set(rows) == {prefix_of(first), prefix_of(second)}
    assert prefix_of(theirs) not in response.text
    assert first not in response.text
    assert second not in response.text
    signed_in_with = [c.text for c in rows[prefix_of(first)].all("td")]
    assert signed_in_with[1] == "just now"  # last used: signing in uses the key
    assert signed_in_with[2] == "Live"
    unused = [c.text for c in rows[prefix_of(second)].all("td")]
    assert unused[0] == "just now"
    assert unused[1:3] == ["never", "Live"]
    assert rows[prefix_of(second)].buttons() == ["Revoke"]
    # No secret on the page but a new one's.
    assert main_of(response).all(id="new-secret") == []


def test_create_key_shows_its_secret_once_and_it_works(
    server: LiveServer, web: httpx.Client
) -> None:
    response = post_form(web, "/keys")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    secret = secret_on(response)
    field_ = main_of(response).by_id("new-secret")
    assert field_.tag == "input"
    assert "readonly" in field_.attrs
    copy = main_of(response).one("button", **{"data-copy": "#new-secret"})
    assert (copy.text, copy.attrs["type"]) == ("Copy", "button")
    assert prefix_of(secret) in key_rows(response)
    assert response.text.count(secret) == 1

    assert api_status(server, secret) == 200
    again = web.get("/keys")
    assert secret not in again.text
    assert prefix_of(secret) in key_rows(again)


def test_the_key_limit_shows_as_an_error(server: LiveServer, web: httpx.Client) -> None:
    limit = server.settings.max_keys_per_user
    for _ in range(limit - 1):  # the key signed in with is one
        assert post_form(web, "/keys").status_code == 200
    refused = post_form(web, "/keys")
    assert refused.status_code == 400
    main = main_of(refused)
    assert "limit" in main.one(class_="alert").text
    assert main.all(id="new-secret") == []
    assert len(key_rows(refused)) == limit


def test_revoke_a_key(server: LiveServer, web: httpx.Client) -> None:
    secret = secret_on(post_form(web, "/keys"))
    key_id = secret.split("_")[1]
    assert api_status(server, secret) == 200
    done = post_form(web, f"/keys/{key_id}/revoke")
    assert done.status_code == 303
    assert done.headers["location"] == "/keys?revoked=1"
    assert api_status(server, secret) == 401
    response = web.get(done.headers["location"])
    assert main_of(response).one(class_="notice").text == "The key was revoked."
    row = key_rows(response)[prefix_of(secret)]
    assert [c.text for c in row.all("td")][2] == "Revoked"
    assert row.buttons() == []
    # Already revoked, unknown, or another user's: not found.
    theirs = new_key(server, unique("them")).split("_")[1]
    for target in (key_id, "000000000000", theirs):
        refused = post_form(web, f"/keys/{target}/revoke")
        assert refused.status_code == 404
        assert main_of(refused).one("h1").text == "Not found"
    assert web.get("/keys").status_code == 200  # still signed in


def test_revoking_this_browsers_key_signs_it_out(server: LiveServer) -> None:
    key = new_key(server, unique("self"))
    web, _ = sign_in(server, key)
    cookie = web.cookies["openjules_session"]
    done = post_form(web, f"/keys/{key.split('_')[1]}/revoke")
    assert done.status_code == 303
    assert done.headers["location"] == "/sign-in"
    assert "openjules_session" not in web.cookies
    assert api_status(server, key) == 401
    # A browser that kept the cookie is signed out too.
    with httpx.Client(base_url=server.url, cookies={"openjules_session": cookie}) as kept:
        response = kept.get("/keys")
        assert response.status_code == 303
        assert response.headers["location"] == "/sign-in?next=/keys"
    web.close()


# --- webhooks ---------------------------------------------------------------------------


def webhook_rows(response: httpx.Response) -> dict[str, Node]:
    rows = main_of(response).all("tr", class_="webhook-row")
    return {row.attrs["id"].removeprefix("webhook-"): row for row in rows}


def test_the_webhook_form_offers_every_event_type(web: httpx.Client) -> None:
    form = main_of(web.get("/webhooks")).one("form", action="/webhooks")
    boxes = form.all("input", type="checkbox")
    assert [b.attrs["value"] for b in boxes] == EVENT_TYPES
    assert {b.attrs["name"] for b in boxes} == {"event_types"}
    labels = {label.attrs["for"]: label.text for label in form.all("label") if "for" in label.attrs}
    assert form.one("input", name="url").attrs["id"] in labels
    assert set(labels.values()) >= {"URL", "Description"}
    assert form.buttons() == ["Create webhook"]


def test_create_list_and_delete_a_webhook(
    server: LiveServer, web: httpx.Client, api_key: str, hook_url: str
) -> None:
    made = post_form(
        web,
        "/webhooks",
        {
            "url": hook_url,
            "description": "CI notifier",
            "event_types": ["session.completed", "session.failed"],
        },
        page="/webhooks",
    )
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    secret = secret_on(made)
    assert secret.startswith("whsec_")
    assert made.text.count(secret) == 1
    (wid,) = webhook_rows(made)
    row = webhook_rows(made)[wid]
    assert row.one("th").text == hook_url
    cells = [c.text for c in row.all("td")]
    assert cells[:3] == ["session.completed, session.failed", "CI notifier", "just now"]
    assert row.one("a").attrs["href"] == f"/webhooks/{wid}"
    assert sorted(row.buttons()) == ["Delete", "Yes, delete webhook"]
    # The API sees the same webhook.
    with api_client(server.api, api_key) as api:
        listed = ok_json(api.get("/webhooks"))["webhooks"]
        assert [(w["id"], w["url"], w["description"]) for w in listed] == [
            (wid, hook_url, "CI notifier")
        ]
    # Shown once.
    again = web.get("/webhooks")
    assert secret not in again.text
    assert list(webhook_rows(again)) == [wid]
    # Another user sees none of it, and cannot touch it.
    with signed_in(server, new_key(server, unique("them"))) as other:
        assert webhook_rows(other.get("/webhooks")) == {}
        assert hook_url not in other.get("/webhooks").text
        assert other.get(f"/webhooks/{wid}").status_code == 404
        refused = post_form(other, f"/webhooks/{wid}/delete", page="/webhooks")
        assert refused.status_code == 404
        assert main_of(refused).one("h1").text == "Not found"
        assert post_form(other, f"/webhooks/{wid}/test", page="/webhooks").status_code == 404
    # No event types: every event.
    every = post_form(web, "/webhooks", {"url": hook_url}, page="/webhooks")
    assert every.status_code == 200
    newest, _ = list(webhook_rows(every).values())
    assert [c.text for c in newest.all("td")][:2] == ["All events", ""]

    deleted = post_form(web, f"/webhooks/{wid}/delete", page="/webhooks")
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/webhooks?deleted=1"
    after = web.get(deleted.headers["location"])
    assert main_of(after).one(class_="notice").text == "The webhook was deleted."
    assert wid not in webhook_rows(after)
    with api_client(server.api, api_key) as api:
        assert api.get(f"/webhooks/{wid}").status_code == 404
    assert post_form(web, f"/webhooks/{wid}/delete", page="/webhooks").status_code == 404
    assert web.get("/webhooks/not-an-id").status_code == 404


@pytest.mark.parametrize(
    ("data", "invalid", "words"),
    [
        ({"url": ""}, "webhook-url", "required"),
        ({"url": "ftp://example.com/hook"}, "webhook-url", "http"),
        ({"url": "https://user:pw@example.com/"}, "webhook-url", "password"),
        (
            {"url": "https://example.com/", "description": "d" * 1001},
            "webhook-description",
            "limit",
        ),
        ({"url": "https://example.com/", "event_types": ["session.exploded"]}, "", "exploded"),
    ],
)
def test_a_refused_webhook_shows_why_and_keeps_the_form(
    web: httpx.Client, data: dict[str, Any], invalid: str, words: str
) -> None:
    values = {
        "description": "keep <me>",
        "event_types": ["session.created", "webhook.test"],
        **data,
    }
    refused = post_form(web, "/webhooks", values, page="/webhooks")
    assert refused.status_code == 400
    main = main_of(refused)
    assert words in main.one(class_="alert").text
    assert main.all(id="new-secret") == []
    assert webhook_rows(refused) == {}
    form = main.one("form", action="/webhooks")
    assert form.by_id("webhook-url").attrs["value"] == values["url"]
    assert form.by_id("webhook-description").attrs["value"] == values["description"]
    checked = [b.attrs["value"] for b in form.all("input", type="checkbox") if "checked" in b.attrs]
    assert checked == [t for t in EVENT_TYPES if t in values["event_types"]]
    if invalid:
        assert form.by_id(invalid).attrs["aria-invalid"] == "true"


@pytest.fixture(scope="module")
def strict_server(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The default: private targets refused (a database of its own)."""
    tmp = tmp_path_factory.mktemp(f"strict-{backend}")
    admin = request.getfixturevalue("postgres_admin") if backend == "postgresql" else None
    url, created = fresh_database(backend, tmp, admin)
    with LiveServer(Settings(data_dir=tmp, database_url=url, workers=0)) as live:
        yield live
    if created and admin:
        drop_database(admin, created)


def test_a_private_target_is_refused_unless_allowed(
    strict_server: LiveServer, hook_url: str
) -> None:
    with signed_in(strict_server, new_key(strict_server, unique("strict"))) as web:
        refused = post_form(web, "/webhooks", {"url": hook_url}, page="/webhooks")
        assert refused.status_code == 400
        main = main_of(refused)
        assert "loopback" in main.one(class_="alert").text
        assert main.by_id("webhook-url").attrs["value"] == hook_url
        assert webhook_rows(refused) == {}


def test_a_webhooks_page_lists_its_deliveries(
    server: LiveServer, web: httpx.Client, api_key: str, receiver: WebhookReceiver, hook_url: str
) -> None:
    made = post_form(web, "/webhooks", {"url": hook_url}, page="/webhooks")
    (wid,) = webhook_rows(made)
    empty = web.get(f"/webhooks/{wid}")
    assert empty.status_code == 200
    main = main_of(empty)
    assert main.one("h1").text == "Webhook deliveries"
    assert main.one("dd", class_="webhook-url").text == hook_url
    assert main.all("tr", class_="delivery-row") == []
    assert "Nothing delivered yet." in main.text

    receiver.answer(500, times=1)
    with api_client(server.api, api_key) as api:
        assert ok_json(api.post(f"/webhooks/{wid}:test")) == {}
        wait_for_deliveries(api, wid, 2)
        # The page's own button queues one too.
        tested = post_form(web, f"/webhooks/{wid}/test", page=f"/webhooks/{wid}")
        assert tested.status_code == 303
        assert tested.headers["location"] == f"/webhooks/{wid}?tested=1"
        listed = wait_for_deliveries(api, wid, 3)
    response = web.get(tested.headers["location"])
    assert "A test event was queued" in main_of(response).one(class_="notice").text
    rows = main_of(response).all("tr", class_="delivery-row")
    shown = [[c.text for c in row.all("td")] for row in rows]
    assert [cells[1:4] for cells in shown] == [
        ["webhook.test", "1", "200"],
        ["webhook.test", "2", "200"],
        ["webhook.test", "1", "500"],
    ]
    assert shown[0][4] == ""
    assert "500" in shown[2][4]
    assert [cells[0] for cells in shown] == [
        d["time"][:19].replace("T", " ") + " UTC" for d in listed
    ]
    assert main_of(response).all("a", rel="next") == []


def test_what_users_wrote_shows_as_text(web: httpx.Client, hook_url: str) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    made = post_form(web, "/webhooks", {"url": hook_url, "description": evil}, page="/webhooks")
    assert made.status_code == 200
    (wid,) = webhook_rows(made)
    for response in (made, web.get("/webhooks"), web.get(f"/webhooks/{wid}")):
        assert "<script>alert" not in response.text
        assert "<img src=x" not in response.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text
        assert evil in main_of(response).text
    refused = post_form(
        web, "/webhooks", {"url": "ftp://x/", "description": evil}, page="/webhooks"
    )
    assert refused.status_code == 400
    assert "<script>alert" not in refused.text
    assert main_of(refused).by_id("webhook-description").attrs["value"] == evil


# --- CSRF -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/keys",
        "/keys/000000000000/revoke",
        "/webhooks",
        f"/webhooks/{'0' * 32}/delete",
        f"/webhooks/{'0' * 32}/test",
    ],
)
def test_a_post_without_the_right_token_is_refused(
    server: LiveServer, web: httpx.Client, path: str, hook_url: str
) -> None:
    token = csrf_token(web.get("/keys").text)
    data = {"url": hook_url}
    attempts = [
        web.post(path, data=data),
        web.post(path, data={**data, "csrf_token": "not-" + token}),
        web.post(path, data={**data, "csrf_token": token}, headers={"Origin": "https://evil.test"}),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert main_of(response).one("h1").text == "Not allowed"
    assert len(key_rows(web.get("/keys"))) == 1
    assert webhook_rows(web.get("/webhooks")) == {}


# --- the browser ------------------------------------------------------------------------


def test_copy_puts_the_new_key_in_the_clipboard(
    server: LiveServer, new_page: Any, api_key: str
) -> None:
    page: Page = new_page(permissions=["clipboard-read", "clipboard-write"])
    page.goto(f"{server.url}/keys")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_role("button", name="Create key", exact=True).click()
    secret_field = page.get_by_label("Your new API key")
    expect(secret_field).to_have_value(re.compile(r"^ojk_"))
    secret = secret_field.input_value()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator("button[data-copy='#new-secret']")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    save_screenshot(page, "keys-new-secret")
    page.goto(f"{server.url}/keys")  # shown once: the list alone from now on
    expect(page.get_by_label("Your new API key")).to_have_count(0)
    expect(page.locator("tr.key-row")).to_have_count(2)
