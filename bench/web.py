"""The web app's speed: the session page, the sessions page and live updates (issue 11,
acceptance 3), against a LiveServer (the whole server as ``openjules serve`` runs it, no
engine workers, so nothing but the benchmark writes) and Debian's Chromium under
Playwright. Baselines are measured in the same run; figures are medians (p50) and p95
over repeats, since machines are noisy; nothing here is a timed assertion.

  1. session page   a completed session of 500 activities (a plan; commands with a few
                    KB of output each, as the engine records them by default: Jules' text
                    in the description; with --bash-artifacts also a bashOutput artifact;
                    progress updates; agent and user messages; a changeSet per
                    finished step; the final changeSet and a pull request). Per load, from
                    the Navigation Timing API: navigation start -> DOMContentLoaded ended
                    (deferred scripts and the page script's handlers have run: the page is
                    interactive) and -> load ended; plus the HTML's size. Each load is a
                    new tab of one browser context (static files cached, as for a person
                    coming back); the first, cold, load is shown apart.
                    Target: DOMContentLoaded p50 < 1000 ms (p95 shown).
  2. sessions page  a user with 1,000 sessions (a quarter each queued, in progress,
                    completed with a pull request, failed): GET / signed in (the first
                    page, 25 rows) timed with httpx; the baseline is the API's
                    sessions.list of the same page size, requests alternating.
                    Target: GET / p50 < 300 ms (p95 shown).
  3. live timeline  a running session's page open in Chromium and the API's
                    ``activities?alt=sse`` open at the same time (httpx, in a process of its
                    own); activities appended one at a time, spaced, the commit time taken
                    right after each transaction commits. In the browser a MutationObserver
                    records Date.now() when each li.activity is added to the timeline; the
                    SSE reader records time.time() when each event's data arrives.
                    Writers: "in-process" commits through the server's own Database (as the
                    engine's workers in ``openjules serve`` do); "other process" through a
                    second Database, whose commits reach the server the way an
                    ``openjules worker``'s do (LISTEN/NOTIFY on PostgreSQL; on SQLite the
                    change poll, every change_poll_seconds = 0.25 s: shown, not judged).
                    Targets: browser p50 < 100 ms, browser p50 / API p50 <= 1.5.

    .venv/bin/python bench/web.py [--postgres] [--loads 10] [--requests 30] [--live 30]

Exit status: 0 every target met, 1 a target missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Error, sync_playwright

import web_support
from _postgres import BenchError, postgres_database
from openjules.settings import Settings
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head
from openjules.testing.browser import chromium_path, sandbox_args
from web_support import (
    POSTGRES_ADMIN,
    BenchServer,
    OtherWriter,
    SseReader,
    append_one,
    live_activity,
    seed_long_session,
    seed_running_session,
    seed_sessions,
    seed_user,
    sign_in,
)

VIEWPORT = {"width": 1280, "height": 800}
SESSION_COOKIE = "openjules_session"
LIST_PAGE_SIZE = 25  # the sessions page's rows per page (openjules.web.listing.PAGE_SIZE)
TARGET_INTERACTIVE_MS = 1000.0
TARGET_LIST_MS = 300.0
TARGET_LIVE_MS = 100.0
TARGET_LIVE_RATIO = 1.5
WAIT_MS = 30_000

NAVIGATION = """() => {
  const e = performance.getEntriesByType("navigation")[0];
  return {dcl: e.domContentLoadedEventEnd, load: e.loadEventEnd, ttfb: e.responseStart,
          response: e.responseEnd, interactive: e.domInteractive, bytes: e.decodedBodySize,
          drawn: performance.now()};
}"""
# A file of the changes drawn by diff2html (the page shows a plain diff until then).
DRAWN_DIFF = "section#changes .diff2html-target .d2h-file-wrapper"
LOADED = """() => {
  const e = performance.getEntriesByType("navigation")[0];
  return e !== undefined && e.loadEventEnd > 0;
}"""
OBSERVE = """() => {
  window.__arrivals = {};
  const timeline = document.getElementById("timeline");
  new MutationObserver((records) => {
    const now = Date.now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === 1 && node.matches("li.activity") && !(node.id in window.__arrivals)) {
          window.__arrivals[node.id] = now;
        }
      }
    }
  }).observe(timeline, {childList: true});
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Stats:
    values: list[float]
    signed: bool = False  # differences: shown with their sign

    @property
    def p50(self) -> float:
        return statistics.median(self.values)

    @property
    def p95(self) -> float:
        return percentile(self.values, 0.95)

    def __str__(self) -> str:
        sign = "+" if self.signed else ""
        return (
            f"p50 {self.p50:{sign}7.1f} ms  p95 {self.p95:{sign}7.1f} ms  "
            f"min {min(self.values):{sign}6.1f}  max {max(self.values):{sign}7.1f}  "
            f"n={len(self.values)}"
        )


@dataclass
class Check:
    name: str
    measured: str
    target: str
    passed: bool | None  # None: shown, not judged


# --- 1. the session page ---------------------------------------------------------------------


def session_page(
    server: BenchServer, context: BrowserContext, cookie: str, session_id: str, loads: int
) -> list[Check]:
    path = f"/session/{session_id}"
    server_ms: list[float] = []
    with httpx.Client(base_url=server.url, cookies={SESSION_COOKIE: cookie}, timeout=60) as c:
        for n in range(loads + 1):
            started = time.perf_counter()
            answer = c.get(path)
            if n:
                server_ms.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise BenchError(f"GET {path}: {answer.status_code}")
        html = answer.content
    timings: list[dict[str, float]] = []
    shown = 0
    for n in range(loads + 1):
        page = context.new_page()
        try:
            page.goto(server.url + path, wait_until="load", timeout=WAIT_MS)
            page.wait_for_function(LOADED, timeout=WAIT_MS)
            page.wait_for_selector(DRAWN_DIFF, timeout=WAIT_MS)
            timings.append(page.evaluate(NAVIGATION))
            if n == 0:
                shown = page.locator("li.activity").count()
        finally:
            page.close()
    cold, warm = timings[0], timings[1:]
    dcl = Stats([t["dcl"] for t in warm])
    load = Stats([t["load"] for t in warm])
    print(f"\n1. session page, {shown} activities: HTML {len(html) / 1024:.0f} KiB")
    print(f"  GET (httpx, whole body)        {Stats(server_ms)}")
    print(f"  response end (browser)         {Stats([t['response'] for t in warm])}")
    print(f"  DOM interactive                {Stats([t['interactive'] for t in warm])}")
    print(f"  DOMContentLoaded ended         {dcl}")
    print(f"  load ended                     {load}")
    print(f"  diffs drawn (observed after)   {Stats([t['drawn'] for t in warm])}")
    print(
        f"  first load, cold cache: DOMContentLoaded {cold['dcl']:.1f} ms, "
        f"load {cold['load']:.1f} ms"
    )
    return [
        Check(
            f"session page ({shown} activities, {len(html) / 1024:.0f} KiB): DOMContentLoaded",
            f"p50 {dcl.p50:.0f} / p95 {dcl.p95:.0f} ms (load p50 {load.p50:.0f} / "
            f"p95 {load.p95:.0f})",
            f"p50 < {TARGET_INTERACTIVE_MS:.0f} ms",
            dcl.p50 < TARGET_INTERACTIVE_MS,
        )
    ]


# --- 2. the sessions page --------------------------------------------------------------------


def sessions_page(
    server: BenchServer, cookie: str, key: str, *, sessions: int, requests: int
) -> list[Check]:
    web_ms: list[float] = []
    api_ms: list[float] = []
    api_path = f"/v1alpha/sessions?pageSize={LIST_PAGE_SIZE}"
    with (
        httpx.Client(base_url=server.url, cookies={SESSION_COOKIE: cookie}, timeout=60) as web,
        httpx.Client(base_url=server.url, headers={"X-Goog-Api-Key": key}, timeout=60) as api,
    ):
        rows = web.get("/").text.count('class="session-row"')
        listed = len(api.get(api_path).json()["sessions"])
        if rows != LIST_PAGE_SIZE or listed != LIST_PAGE_SIZE:
            raise BenchError(f"the first page shows {rows} rows, the API {listed} sessions")
        pair = [(web, "/", web_ms), (api, api_path, api_ms)]
        for n in range(requests + 3):  # three of each to warm up
            for client, path, into in pair if n % 2 else pair[::-1]:  # alternating first
                started = time.perf_counter()
                answer = client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    raise BenchError(f"GET {path}: {answer.status_code}")
                if n >= 3:
                    into.append(elapsed)
    web_stats, api_stats = Stats(web_ms), Stats(api_ms)
    ratio = web_stats.p50 / api_stats.p50
    print(f"\n2. sessions page, first page of {LIST_PAGE_SIZE} rows")
    print(f"  GET / (signed in)              {web_stats}")
    print(f"  API sessions.list pageSize=25  {api_stats}")
    print(f"  ratio of p50s: {ratio:.2f}x")
    return [
        Check(
            f"sessions page ({sessions:,} sessions): GET /",
            f"p50 {web_stats.p50:.1f} / p95 {web_stats.p95:.1f} ms "
            f"(API p50 {api_stats.p50:.1f}, {ratio:.2f}x)",
            f"p50 < {TARGET_LIST_MS:.0f} ms",
            web_stats.p50 < TARGET_LIST_MS,
        )
    ]


# --- 3. live updates -------------------------------------------------------------------------


def live_timeline(
    server: BenchServer,
    context: BrowserContext,
    key: str,
    owner_id: int,
    *,
    samples: int,
    spacing_ms: int,
    other: bool,
    judged: bool,
) -> list[Check]:
    writer = "other process" if other else "in-process"
    session_id = server.call(lambda db: seed_running_session(db, owner_id))
    reader = SseReader(f"{server.api}/sessions/{session_id}/activities?alt=sse", key)
    other_writer = (
        OtherWriter(server.settings.resolved_database_url(), session_id) if other else None
    )
    page = context.new_page()
    rng = random.Random(17)
    committed: dict[str, float] = {}
    try:
        page.goto(f"{server.url}/session/{session_id}", wait_until="load", timeout=WAIT_MS)
        page.evaluate(OBSERVE)

        def append(n: int) -> tuple[str, float]:
            if other_writer is not None:
                return other_writer.append(n)
            activity = live_activity(rng, n)

            async def write(db: Database) -> tuple[str, float]:
                return await append_one(db, session_id, activity)

            return server.call(write)

        # A first activity on both streams: the page's event source is connected.
        first, _ = append(-1)
        page.wait_for_function(f"() => 'activity-{first}' in window.__arrivals", timeout=WAIT_MS)
        for n in range(samples):
            page.wait_for_timeout(spacing_ms)
            activity_id, at = append(n)
            committed[activity_id] = at
        last = list(committed)[-1]
        page.wait_for_function(f"() => 'activity-{last}' in window.__arrivals", timeout=WAIT_MS)
        page.wait_for_timeout(500)  # the API reader's last lines
        browser_seen: dict[str, float] = page.evaluate("window.__arrivals")
    finally:
        page.close()
        api_seen = reader.stop()
        if other_writer is not None:
            other_writer.stop()
    missing = [a for a in committed if f"activity-{a}" not in browser_seen or a not in api_seen]
    if missing:
        raise BenchError(f"{len(missing)} activities never arrived (e.g. {missing[0]})")
    browser = Stats([browser_seen[f"activity-{a}"] - at * 1000 for a, at in committed.items()])
    api = Stats([(api_seen[a] - at) * 1000 for a, at in committed.items()])
    paired = Stats(
        [browser_seen[f"activity-{a}"] - api_seen[a] * 1000 for a in committed], signed=True
    )
    ratio = browser.p50 / api.p50 if api.p50 > 0 else float("inf")
    print(f"\n3. live timeline, {writer} writer, commit -> shown ({samples} activities)")
    print(f"  browser (li.activity added)    {browser}")
    print(f"  API alt=sse (event data read)  {api}")
    print(f"  browser - API, per activity    {paired}")
    print(f"  ratio of p50s: {ratio:.2f}x")
    return [
        Check(
            f"live activity, {writer} writer: browser",
            f"p50 {browser.p50:.1f} / p95 {browser.p95:.1f} ms",
            f"p50 < {TARGET_LIVE_MS:.0f} ms",
            browser.p50 < TARGET_LIVE_MS if judged else None,
        ),
        Check(
            f"live activity, {writer} writer: browser / API SSE",
            f"{ratio:.2f}x (API p50 {api.p50:.1f} / p95 {api.p95:.1f} ms)",
            f"<= {TARGET_LIVE_RATIO}x",
            ratio <= TARGET_LIVE_RATIO if judged else None,
        ),
    ]


# --- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def database(args: argparse.Namespace, tmp: Path) -> Iterator[str]:
    if not args.postgres:
        yield f"sqlite+aiosqlite:///{tmp / 'openjules.db'}"
        return
    with postgres_database(args.postgres_admin) as url:
        yield url


def launch(playwright: Any) -> Browser:
    executable = chromium_path()
    if executable is None:
        raise BenchError("no Chromium: set OPENJULES_CHROMIUM or put chromium on PATH")
    browser: Browser = playwright.chromium.launch(executable_path=executable, args=sandbox_args())
    return browser


def run(args: argparse.Namespace) -> list[Check]:
    backend = "PostgreSQL" if args.postgres else "SQLite"
    with tempfile.TemporaryDirectory(prefix="openjules-bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        with database(args, tmp) as url:
            upgrade_to_head(url)
            settings = Settings(data_dir=tmp / "data", database_url=url, workers=0)
            with BenchServer(settings) as server:
                started = time.monotonic()
                key, owner_id = server.call(seed_user)
                long_id = server.call(lambda db: seed_long_session(db, owner_id, args.activities))
                server.call(lambda db: seed_sessions(db, owner_id, args.sessions - 1))
                print(
                    f"{backend}: seeded {args.sessions} sessions, one of {args.activities} "
                    f"activities, in {time.monotonic() - started:.1f} s"
                )
                cookie = sign_in(server.url, key)
                checks = sessions_page(
                    server, cookie, key, sessions=args.sessions, requests=args.requests
                )
                with sync_playwright() as playwright:
                    browser = launch(playwright)
                    try:
                        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                        context.add_cookies(
                            [{"name": SESSION_COOKIE, "value": cookie, "url": server.url}]
                        )
                        checks = session_page(server, context, cookie, long_id, args.loads) + checks
                        for other in (False, True):
                            checks += live_timeline(
                                server,
                                context,
                                key,
                                owner_id,
                                samples=args.live,
                                spacing_ms=args.spacing_ms,
                                other=other,
                                judged=args.postgres or not other,
                            )
                    except Error as exc:
                        raise BenchError(f"the browser: {exc}") from None
                    finally:
                        browser.close()
    return checks


def report(checks: list[Check], backend: str) -> bool:
    width = max(len(c.name) for c in checks)
    measured = max(len(c.measured) for c in checks)
    print(
        f"\n{'target (' + backend + ')':<{width}}  {'measured':<{measured}}  {'goal':<14}  result"
    )
    for c in checks:
        result = "info" if c.passed is None else ("PASS" if c.passed else "MISS")
        print(f"{c.name:<{width}}  {c.measured:<{measured}}  {c.target:<14}  {result}")
    return all(c.passed is not False for c in checks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--postgres-admin", default=POSTGRES_ADMIN)
    parser.add_argument("--loads", type=int, default=10, help="session page loads")
    parser.add_argument("--requests", type=int, default=30, help="sessions page requests")
    parser.add_argument("--live", type=int, default=30, help="live activities per writer")
    parser.add_argument("--spacing-ms", type=int, default=200)
    parser.add_argument("--activities", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument(
        "--bash-artifacts",
        action="store_true",
        help="commands also as bashOutput artifacts (settings.bash_output_artifacts)",
    )
    args = parser.parse_args()
    web_support.BASH_ARTIFACTS = args.bash_artifacts
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) at the start")
    try:
        checks = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    ok = report(checks, "PostgreSQL" if args.postgres else "SQLite")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    print("\nPASS" if ok else "\nMISS")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
