"""Fixtures of the browser tests: one Chromium per test module, a fresh context per test.

- ``browser``: Debian's chromium under Playwright's sync API (module-scoped; skips without
  Chromium, fails under CI=true).
- ``new_page(width=1280, height=800, **context_options)``: a page in a fresh context; every
  page a test makes is watched by ``page_errors``.
- ``page``: ``new_page()`` for tests that need one page.
- ``page_errors``: the test's ``PageErrors``; a console error, uncaught page error or CSP
  violation fails the test unless it calls ``page_errors.allow(pattern)`` for it.
- ``api_key``: as in tests/conftest.py, made off the browser's event loop.
- ``scripts``, ``model``, ``agent`` (module-scoped, for the tests whose sessions run):
  ``tests.agent_fixtures``'.

The server fixtures of tests/conftest.py (``backend``, ``server_settings``, ``server``) are
reused as they are. Tests here are plain sync functions (see browser_support).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Protocol

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from openjules.testing import LiveServer
from openjules.testing.browser import sandbox_args
from tests.agent_fixtures import agent, agent_overrides, model, scripts  # noqa: F401
from tests.agent_kit import new_key
from tests.web.browser_support import (
    DEFAULT_VIEWPORT,
    PageErrors,
    flush_events,
    require_chromium,
)

PAGE_ERRORS = pytest.StashKey[PageErrors]()


class NewPage(Protocol):
    def __call__(self, *, width: int = ..., height: int = ..., **context_options: Any) -> Page: ...


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=sandbox_args())
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_errors(request: pytest.FixtureRequest) -> PageErrors:
    errors = PageErrors()
    request.node.stash[PAGE_ERRORS] = errors
    return errors


@pytest.fixture
def new_page(browser: Browser, page_errors: PageErrors) -> Iterator[NewPage]:
    contexts = []

    def make(
        *, width: int = DEFAULT_VIEWPORT[0], height: int = DEFAULT_VIEWPORT[1], **options: Any
    ) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        page_errors.watch(context)
        return context.new_page()

    yield make
    try:
        for context in contexts:
            flush_events(context)
        # What came after the test's own check (pytest_runtest_call) fails it at teardown.
        page_errors.check()
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def page(new_page: NewPage) -> Page:
    return new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test that passed still fails when its pages reported unexpected errors."""
    yield
    errors = item.stash.get(PAGE_ERRORS, None)
    if errors is None:
        return
    browser = getattr(item, "funcargs", {}).get("browser")
    if isinstance(browser, Browser):
        for context in browser.contexts:
            flush_events(context)
    errors.check()


@pytest.fixture
def api_key(server: LiveServer) -> str:
    """A new user with one key for each test (on the module's database)."""
    return new_key(server)
