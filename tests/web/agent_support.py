"""The kit of the browser tests whose sessions really run (test_flow, test_controls,
test_safety): the agent at work with the fake model in the real sandbox, on a live server
with workers. Their module fixtures ``scripts``, ``model`` and ``agent`` are in conftest.py.

- ``Scripts``: the fake model's answers by session: ``scripts.add(prompt, steps)`` (or
  ``scripts.prompt(text, steps)``, which tags ``text`` so it can start several sessions);
  turn N of the session gets step N, the same again after a pause (see the class).
  ``call(name, **arguments)``, the reply calling one tool, is tests/engine/worker_support's.
- ``agent_settings(base, data_dir=..., model=..., **overrides)``: the ``agent`` server's.
- ``new_key(live, name)``: a new user's API key; ``revoke_key(settings, key)``: what
  ``openjules keys revoke`` does (through ``off_loop``); ``local_source(live, repo, name)``:
  a local repository registered as acme/NAME; ``start(client, prompt, ...)``: a session
  created through the API.
- ``sign_in(page, url, key)``: the sign-in form, filled in and sent; ``session_id_of(page)``,
  ``state_badge(page)``, ``row_badge(page, sid)``, ``csrf_token(page)``; ``no_reload(page)``:
  asserts nothing on the page came from a reload or a form post.
- ``held(command)`` / ``release(live, session_id)``: a shell command that waits in the
  sandbox until the test lets it go (so what follows it happens after, say, a page loaded).
- ``wait_until(predicate, what=...)``; a session's state is waited for with
  ``tests.support.wait_for_state``.

Everything here is sync and safe while Playwright's sync API is up: helpers that run their
own event loop go through ``off_loop``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Frame, Locator, Page
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.settings import Settings
from openjules.store import users
from openjules.store.oneshot import run_write
from openjules.testing import FakeModel, Fault, LiveServer, Reply, provision_user, register_source
from tests.engine.worker_support import turn_of
from tests.web.browser_support import off_loop

# What a step of a script may be: a reply, or a reply chosen by how often this turn of this
# prompt was asked (1 the first time).
ScriptStep = Reply | Callable[[int], Reply]
UNSCRIPTED = '{"error": {"message": "no script for this prompt", "code": 400}}'
TAG_LINE = "Tracking: "
# ``held``: the command touches HOLD in the work tree, then waits (up to 60 s) for GO.
HOLD, GO = ".flow-hold", ".flow-go"
HOLD_S = 60


class Scripts:
    """Each session's model, by its prompt (its first user message): ``add(prompt, [step,
    ...])``; turn N gets step N (the last step repeats), so a step replayed after a pause
    gets the same answer. A prompt without a script gets a 400 (the session fails)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[ScriptStep]] = {}
        self._asked: Counter[tuple[str, int]] = Counter()

    def add(self, prompt: str, steps: Sequence[ScriptStep]) -> str:
        with self._lock:
            assert prompt not in self._scripts, f"{prompt!r} already has a script"
            self._scripts[prompt] = list(steps)
        return prompt

    def prompt(self, text: str, steps: Sequence[ScriptStep]) -> str:
        """``add`` for ``text`` followed by a line with a fresh tag: the same text may start
        several sessions, and their titles (the first line) stay ``text``."""
        return self.add(f"{text}\n\n{TAG_LINE}flow-{secrets.token_hex(4)}", steps)

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


def agent_settings(
    base: Settings, *, data_dir: Path, model: FakeModel, **overrides: Any
) -> Settings:
    """``base`` whose two workers run the agent on ``model`` (no retries: each turn is asked
    once unless a pause replays it), with ``overrides``."""
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "workers": 2,
            "model_base_url": model.base_url,
            "model_api_key": "sk-fake",
            "model": "fake-model",
            "model_max_retries": 0,
            "model_timeout_seconds": 10.0,
            "sse_keepalive_seconds": 1.0,
            **overrides,
        }
    )


def new_key(live: LiveServer, name: str = "user") -> str:
    """A new user ``NAME-<random>`` with one API key."""
    return off_loop(provision_user, live.settings, name=f"{name}-{secrets.token_hex(4)}")


def key_id(secret: str) -> str:
    """The id in an API key ``ojk_<id>_<secret>``."""
    return secret.split("_")[1]


def revoke_key(settings: Settings, secret: str) -> None:
    """Revoke the API key ``secret`` in the store (what ``openjules keys revoke`` does)."""

    async def action(conn: AsyncConnection) -> None:
        await users.revoke_key(conn, key_id=key_id(secret))

    run_write(settings.resolved_database_url(), action)


def local_source(live: LiveServer, repo: Path, name: str) -> str:
    """The repository at ``repo`` registered on ``live`` as acme/``name``."""
    return off_loop(register_source, live.settings, location=str(repo), owner="acme", repo=name)


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


def sign_in(page: Page, base_url: str, key: str) -> None:
    """Sign ``page`` in with ``key`` (the form at /sign-in); it ends on the sessions page."""
    page.goto(f"{base_url}/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def session_id_of(page: Page) -> str:
    """The id of the session whose page ``page`` shows."""
    found = re.search(r"/session/([0-9]+)", page.url)
    assert found, f"not a session page: {page.url}"
    return found.group(1)


def state_badge(page: Page) -> Locator:
    """The session page's state badge (not the "Archived" one)."""
    return page.locator("#session-header .badge[data-state]")


def row_badge(page: Page, session_id: str) -> Locator:
    return page.locator(f"#session-{session_id} .badge[data-state]")


def csrf_token(page: Page) -> str:
    """The CSRF token of the page's forms."""
    return page.locator("input[name=csrf_token]").first.input_value()


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


def held(command: str) -> str:
    """``command``, run once the test calls ``release`` for the session."""
    polls = int(HOLD_S / 0.05)
    return (
        f"touch {HOLD}; i=0; while [ ! -e {GO} ] && [ $i -lt {polls} ]; do sleep 0.05; "
        f"i=$((i+1)); done; rm -f {HOLD} {GO}; {command}"
    )


def release(live: LiveServer, session_id: str) -> None:
    """Let the session's ``held`` command go on (waiting until it is holding)."""
    tree = live.settings.data_dir / "workspaces" / session_id / "tree"
    wait_until(
        lambda: (tree / HOLD).exists(),
        seconds=HOLD_S,
        what=f"a held command in session {session_id}",
    )
    (tree / GO).touch()


def wait_until(predicate: Callable[[], object], *, seconds: float = 30, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.02)
