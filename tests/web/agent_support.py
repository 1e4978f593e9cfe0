"""The page side of the browser tests whose sessions really run (test_flow, test_controls,
test_safety); the agent side (``Scripts``, ``agent_settings``, ``new_key``, ``start``,
``held``/``release``, ...) is ``tests.agent_kit``, re-exported here.

- ``sign_in(page, url, key)``: the sign-in form, filled in and sent; ``session_id_of(page)``,
  ``state_badge(page)``, ``row_badge(page, sid)``, ``csrf_token(page)``; ``no_reload(page)``:
  asserts nothing on the page came from a reload or a form post.

Everything here is sync and safe while Playwright's sync API is up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Frame, Locator, Page

from tests.agent_kit import (
    GO,
    HOLD,
    HOLD_S,
    TAG_LINE,
    UNSCRIPTED,
    Scripts,
    ScriptStep,
    agent_settings,
    held,
    key_id,
    local_source,
    new_key,
    release,
    revoke_key,
    start,
    wait_until,
)

__all__ = [
    "GO",
    "HOLD",
    "HOLD_S",
    "TAG_LINE",
    "UNSCRIPTED",
    "ScriptStep",
    "Scripts",
    "agent_settings",
    "csrf_token",
    "held",
    "key_id",
    "local_source",
    "new_key",
    "no_reload",
    "release",
    "revoke_key",
    "row_badge",
    "session_id_of",
    "sign_in",
    "start",
    "state_badge",
    "wait_until",
]


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
