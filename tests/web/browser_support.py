"""The browser-test harness: Debian's chromium driven by Playwright's sync API.

- ``require_chromium()``: ``openjules.testing.browser.chromium_path()`` (``OPENJULES_CHROMIUM``,
  else ``chromium`` or ``chromium-browser`` on PATH), or skip (fail under CI=true) without one.
  ``scripts/install-browser`` (``make browser-deps``) installs it. Playwright's own browser
  downloads (``playwright install``) are never used.
- ``PageErrors``: the console errors, uncaught page errors and CSP violations of a test's pages;
  the ``page`` fixtures fail the test when any were not expected (``PageErrors.allow``).
- ``save_screenshot(page, name)``: a full-page PNG in ``artifacts_dir()``.
- ``off_loop(fn, ...)``: calls a synchronous helper that runs its own event loop
  (``provision_user``, ``register_source``, ...) while the browser is up.

Browser tests are plain sync test functions: the sync API refuses to start inside a
running event loop, and while it is up it marks its own loop as running in the test's
thread, so ``asyncio.run`` (and async tests) cannot run there until the browser is closed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, WebError

from openjules.testing.browser import CHROMIUM_NAMES, chromium_path
from tests.agent_kit import off_loop

# Re-exported: the browser tests import it from here.
__all__ = ["off_loop"]

REPO_ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIR = REPO_ROOT / "src" / "openjules" / "web" / "static" / "vendor"
DEFAULT_VIEWPORT = (1280, 800)


def require_chromium() -> str:
    """``chromium_path()``, or skip the test (fail it under CI=true) when there is none."""
    path = chromium_path()
    if path is not None:
        return path
    configured = os.environ.get("OPENJULES_CHROMIUM")
    where = (
        f"OPENJULES_CHROMIUM={configured} is not an executable"
        if configured
        else f"none of {', '.join(CHROMIUM_NAMES)} is on PATH"
    )
    reason = f"Chromium is needed for browser tests: {where} (run scripts/install-browser)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def artifacts_dir() -> Path:
    """Where screenshots go: ``OPENJULES_ARTIFACTS``, else ``<repo>/test-artifacts/screenshots``."""
    configured = os.environ.get("OPENJULES_ARTIFACTS")
    return Path(configured) if configured else REPO_ROOT / "test-artifacts" / "screenshots"


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``{name}-{width}x{height}.png`` (the viewport's size)."""
    size = page.viewport_size
    width, height = (size["width"], size["height"]) if size else DEFAULT_VIEWPORT
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"
    directory = artifacts_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{safe}-{width}x{height}.png"
    # Both backends' runs of a test save the same names, at once on two pytest-xdist
    # workers: each file is written whole under a name of its own, then renamed over.
    staged = directory / f".{path.name}.{os.getpid()}.tmp"
    staged.write_bytes(page.screenshot(full_page=True))
    staged.replace(path)
    return path


@dataclass(frozen=True)
class PageProblem:
    """One console error, uncaught page error or CSP violation."""

    kind: str  # "console" or "pageerror"
    text: str
    url: str = ""

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"[{self.kind}] {self.text}{where}"


@dataclass
class PageErrors:
    """What went wrong in a test's pages. Chromium reports a CSP violation as a console error
    ("Refused to ... because it violates the following Content Security Policy directive").

    ``allow(pattern)`` marks the problems whose text matches the regular expression as
    expected; ``unexpected()`` is what is left (a missing /favicon.ico, which Chromium asks
    for on its own, is never unexpected); ``check()`` fails when that is not empty."""

    problems: list[PageProblem] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)
    reported: int = 0

    def watch(self, context: BrowserContext) -> None:
        """Record the problems of every page of ``context``."""
        context.on("console", self._on_console)
        context.on("weberror", self._on_weberror)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location
            self.problems.append(PageProblem("console", message.text, location.get("url", "")))

    def _on_weberror(self, error: WebError) -> None:
        page = error.page
        self.problems.append(PageProblem("pageerror", str(error.error), page.url if page else ""))

    def allow(self, pattern: str) -> None:
        """Expect problems matching ``pattern`` (``re.search``); they do not fail the test."""
        self.allowed.append(re.compile(pattern))

    def matching(self, pattern: str) -> list[PageProblem]:
        """The problems (expected or not) whose text matches ``pattern``."""
        regex = re.compile(pattern)
        return [p for p in self.problems if regex.search(p.text)]

    def unexpected(self) -> list[PageProblem]:
        return [
            p
            for p in self.problems
            if not _browser_initiated(p) and not any(a.search(p.text) for a in self.allowed)
        ]

    def check(self) -> None:
        """Fail with the unexpected problems not reported by an earlier ``check``."""
        new = self.unexpected()[self.reported :]
        self.reported += len(new)
        if new:
            listing = "\n".join(f"  {p}" for p in new)
            pytest.fail(f"the page reported {len(new)} unexpected error(s):\n{listing}")


def _browser_initiated(problem: PageProblem) -> bool:
    """Chromium asks for /favicon.ico on its own: a page need not have one."""
    return problem.url.endswith("/favicon.ico")


def flush_events(context: BrowserContext) -> None:
    """A round trip to each open page, so that the events it sent before are delivered."""
    for page in context.pages:
        if not page.is_closed():
            page.evaluate("0")
