"""Shared pieces of the controls and safety browser tests (test_controls, test_safety).

- ``Scripts``: a FakeModel responder that answers each session by its prompt and by turn
  (so a step replayed after a pause gets the same answer), counting what it was asked.
- ``agent_server(...)``: a module's LiveServer whose workers run the agent against it.
- ``sign_in(page, base_url, key)``: the sign-in form, filled in and sent.
- ``start(client, prompt, ...)``: a session created through the API; ``revoke_key``: what
  ``openjules keys revoke`` does (call it through ``off_loop``).
- ``state_badge(page)``, ``row_badge(page, sid)``: the state badges tests read;
  ``no_reload(page)``: asserts nothing on the page came from a reload or a form post.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Frame, Locator, Page, expect
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.settings import Settings
from openjules.store import users
from openjules.store.oneshot import run_write
from openjules.testing import FakeModel, Fault, LiveServer, Reply, ToolCall

# What a step of a script may be: a reply, or a reply chosen by how often this turn of this
# prompt was asked (1 the first time).
ScriptStep = Reply | Callable[[int], Reply]
UNSCRIPTED = '{"error": {"message": "no script for this prompt", "code": 400}}'


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(name, arguments)])


def turn_of(request: dict[str, Any]) -> int:
    """How many model turns the transcript already holds: the same after a resume."""
    return sum(1 for m in request["messages"] if m["role"] == "assistant")


class Scripts:
    """Each session's model, by its prompt: ``add(prompt, [step, ...])``; turn N gets step
    N (the last step repeats). A prompt without a script gets a 400 (the session fails)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[ScriptStep]] = {}
        self._asked: Counter[tuple[str, int]] = Counter()

    def add(self, prompt: str, steps: Sequence[ScriptStep]) -> str:
        with self._lock:
            self._scripts[prompt] = list(steps)
        return prompt

    def asked(self, prompt: str, turn: int) -> int:
        """How many times turn ``turn`` of ``prompt``'s session was asked for."""
        with self._lock:
            return self._asked[(prompt, turn)]

    def __call__(self, request: dict[str, Any]) -> Reply | Fault:
        prompt = str(request["messages"][1]["content"])
        turn = turn_of(request)
        with self._lock:
            self._asked[(prompt, turn)] += 1
            times = self._asked[(prompt, turn)]
            script = self._scripts.get(prompt)
        if not script:
            return Fault(400, body=UNSCRIPTED)
        step = script[min(turn, len(script) - 1)]
        return step if isinstance(step, Reply) else step(times)


@contextmanager
def agent_server(
    server_settings: Settings, model: FakeModel, data_dir: Path
) -> Iterator[LiveServer]:
    """A LiveServer on the module's database whose two workers run the agent on ``model``."""
    settings = server_settings.model_copy(
        update={
            "data_dir": data_dir,
            "workers": 2,
            "model_base_url": model.base_url,
            "model_api_key": "sk-fake",
            "model": "fake-model",
            "model_max_retries": 0,
            "model_timeout_seconds": 10.0,
            "sse_keepalive_seconds": 1.0,
        }
    )
    with LiveServer(settings) as live:
        yield live


def sign_in(page: Page, base_url: str, key: str) -> None:
    """Sign in through the form; the browser lands on the sessions page."""
    page.goto(f"{base_url}/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/")


def start(
    client: httpx.Client,
    prompt: str,
    *,
    source: str | None = None,
    branch: str | None = None,
    title: str | None = None,
    require_plan_approval: bool = False,
) -> str:
    """A new session through the API; returns its id."""
    body: dict[str, Any] = {"prompt": prompt, "requirePlanApproval": require_plan_approval}
    if source:
        context: dict[str, Any] = {"source": source}
        if branch:
            context["githubRepoContext"] = {"startingBranch": branch}
        body["sourceContext"] = context
    if title:
        body["title"] = title
    response = client.post("/sessions", json=body)
    assert response.status_code == 200, response.text
    sid: str = response.json()["id"]
    return sid


def key_id(secret: str) -> str:
    """The id in an API key ``ojk_<id>_<secret>``."""
    return secret.split("_")[1]


def revoke_key(settings: Settings, secret: str) -> None:
    """Revoke the API key ``secret`` in the store (what ``openjules keys revoke`` does)."""

    async def action(conn: AsyncConnection) -> None:
        await users.revoke_key(conn, key_id=key_id(secret))

    run_write(settings.resolved_database_url(), action)


def state_badge(page: Page) -> Locator:
    """The session page's state badge (not the "Archived" one)."""
    return page.locator("#session-header .badge[data-state]")


def row_badge(page: Page, session_id: str) -> Locator:
    return page.locator(f"#session-{session_id} .badge[data-state]")


def csrf_token(page: Page) -> str:
    """The CSRF token of the page's forms."""
    return page.locator("input[name=csrf_token]").first.input_value()


def wait_until(predicate: Callable[[], object], *, seconds: float = 30, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.02)


@contextmanager
def no_reload(page: Page) -> Iterator[None]:
    """Asserts the page was not navigated (reloaded, re-posted) within the block: what
    changed on it came over its live streams."""
    navigations: list[str] = []

    def navigated(frame: Frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.on("framenavigated", navigated)
    try:
        yield
    finally:
        page.remove_listener("framenavigated", navigated)
    assert navigations == [], f"the page navigated: {navigations}"
