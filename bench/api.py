"""API throughput benchmark: requests/s as ratios to a bare Starlette JSON endpoint.

Seeds a fresh database with one session holding 5,000 activities, serves the openjules app
and a one-route Starlette app the same way (uvicorn, one worker, loopback, log level
warning, no access log), each in its own process, and drives them from this process with a
closed-loop keep-alive client. Scenarios alternate over several rounds; the table shows
medians. Absolute numbers depend on the machine; the ratios are what to compare.

Scenarios:
  bare       GET /healthz on the bare Starlette app (the baseline, ratio 1.00)
  healthz    GET /healthz on openjules (framework and middleware only; a diagnostic)
  session    GET /v1alpha/sessions/{id}
  page1      GET /v1alpha/sessions/{id}/activities (default page size 50)
  page50     the same with the pageToken of page 50, found by walking nextPageToken

Check: page 50 costs no more than 1.5x page 1, i.e. rps(page1) / rps(page50) <= 1.5.

    .venv/bin/python bench/api.py [--seconds 5] [--rounds 3] [--concurrency 16]
    .venv/bin/python bench/api.py --backend postgresql [--database-url URL]

Exit status: 0 PASS, 1 FAIL, 2 the benchmark could not run (errors, bad responses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import psycopg
import uvicorn

from _load import CLIENTS, LoadError, LoadResult, Target, run_load
from _process import stop_process
from openjules._types import CreateSessionRequest, Originator, UserMessaged
from openjules.store import sessions as session_store
from openjules.store import transitions, users
from openjules.store.activities import NewActivity
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head
from openjules.store.transitions import Event

HOST = "127.0.0.1"
SERVE_SCRIPT = Path(__file__).with_name("_serve.py")
PUBLIC_BASE_URL = "http://bench.invalid"
ACTIVITIES = 5_000
BATCH = 500
PAGE_SIZE = 50  # the server's default for activities; the benchmark sends no pageSize
TARGET_PAGE = 50
MAX_COST_RATIO = 1.5
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
START_TIMEOUT = 60.0


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # "bare" or "openjules"
    path: str
    description: str


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int


# --- database -------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(args: argparse.Namespace, tmp: Path) -> Iterator[str]:
    """The SQLAlchemy URL of the database to seed; a fresh one is dropped afterwards."""
    if args.backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'openjules.db'}"
        return
    if args.database_url:
        yield args.database_url
        return
    name = f"openjules_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(args.postgres_admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise BenchError(f"cannot create a database via {args.postgres_admin}: {reason}") from None
    base = args.postgres_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(args.postgres_admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _seed(url: str, activities: int) -> tuple[str, str]:
    db = Database(url)
    try:
        async with db.write() as conn:
            user = await users.get_or_create_user(conn, name=f"bench-{secrets.token_hex(4)}")
            key = await users.create_key(conn, user=user, max_live_keys=3)
            session = await session_store.create(
                conn,
                owner_id=user.id,
                request=CreateSessionRequest(prompt="Benchmark session: 5,000 activities."),
            )
        assert session.id is not None
        for first in range(0, activities, BATCH):
            batch = [
                NewActivity(
                    kind=UserMessaged(
                        user_message=f"Message {n + 1}: please also cover the edge case "
                        "where the input list is empty and log what was skipped."
                    ),
                    originator=Originator.USER,
                )
                for n in range(first, min(first + BATCH, activities))
            ]
            async with db.write() as conn:
                await transitions.apply(
                    conn, session_id=session.id, event=Event.USER_MESSAGED, new_activities=batch
                )
        return key.secret, session.id
    finally:
        await db.dispose()


def seed(url: str, activities: int) -> tuple[str, str]:
    """Migrate, then one user, one key, one QUEUED session with ``activities`` activities."""
    upgrade_to_head(url)
    return asyncio.run(_seed(url, activities))


# --- servers --------------------------------------------------------------------------


def start_server(name: str, extra: Sequence[str], log: Path) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(SERVE_SCRIPT), *extra],
            stdin=subprocess.PIPE,  # closed when we exit: the server then shuts itself down
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us; we stop the servers in order
        )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        process.wait()
        raise BenchError(f"{name} server did not start; see {log}:\n{log.read_text()[-2000:]}")
    return Server(name=name, process=process, port=int(line))


def wait_ready(server: Server, path: str, headers: dict[str, str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    url = f"http://{HOST}:{server.port}{path}"
    while True:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} server exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, headers=headers, timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name} server not ready after {START_TIMEOUT:.0f} s")
        time.sleep(0.1)


def stop_server(server: Server) -> None:
    stop_process(server.process, timeout=10)


# --- the page token of page 50 -----------------------------------------------------------


def find_page_token(url: str, headers: dict[str, str], page: int) -> str:
    """Walk nextPageToken from page 1; check every page is full and in order."""
    token = ""
    previous_last = ""
    with httpx.Client(headers=headers, timeout=30.0) as client:
        for number in range(1, page + 1):
            params = {"pageToken": token} if token else {}
            response = client.get(url, params=params)
            if response.status_code != 200:
                raise BenchError(f"page {number}: HTTP {response.status_code} {response.text}")
            body = response.json()
            items = body.get("activities", [])
            if len(items) != PAGE_SIZE:
                raise BenchError(f"page {number} has {len(items)} activities, not {PAGE_SIZE}")
            if previous_last and items[0]["createTime"] <= previous_last:
                raise BenchError(f"page {number} does not follow page {number - 1}")
            previous_last = items[-1]["createTime"]
            if number == page:
                return token
            token = body.get("nextPageToken", "")
            if not token:
                raise BenchError(f"page {number} has no nextPageToken")
    raise AssertionError("unreachable")


# --- running and reporting ---------------------------------------------------------------


def measure(
    scenarios: Sequence[Scenario],
    servers: dict[str, Server],
    headers: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, list[LoadResult]]:
    results: dict[str, list[LoadResult]] = {s.name: [] for s in scenarios}
    for round_no in range(args.rounds):
        # Rotate the order each round so drift in machine load spreads over all scenarios.
        shift = round_no % len(scenarios)
        order = [*scenarios[shift:], *scenarios[:shift]]
        line = []
        for scenario in order:
            target = Target(HOST, servers[scenario.server].port, scenario.path, headers)
            try:
                result = asyncio.run(
                    run_load(
                        target,
                        client=args.client,
                        concurrency=args.concurrency,
                        warmup=args.warmup,
                        seconds=args.seconds,
                        max_requests=args.max_requests,
                    )
                )
            except LoadError as exc:
                raise BenchError(f"{scenario.name}: {exc}") from None
            if result.errors:
                raise BenchError(
                    f"{scenario.name}: {result.errors} failed requests "
                    f"(first: {result.first_error})"
                )
            if result.requests == 0:
                raise BenchError(f"{scenario.name}: no request completed")
            results[scenario.name].append(result)
            line.append(f"{scenario.name} {result.rps:,.0f}")
        print(f"  round {round_no + 1}/{args.rounds}: " + ", ".join(line) + " req/s", flush=True)
    return results


def report(scenarios: Sequence[Scenario], results: dict[str, list[LoadResult]]) -> bool:
    baseline = results["bare"]
    rounds = len(baseline)
    print()
    print(f"{'scenario':<10} {'requests/s':>11} {'x bare':>7} {'spread':>8}  what")
    for s in scenarios:
        rps = [r.rps for r in results[s.name]]
        # Each round's ratio uses that round's baseline; the median of those is shown.
        ratios = [r / b.rps for r, b in zip(rps, baseline, strict=True)]
        spread = (max(ratios) - min(ratios)) / 2 if rounds > 1 else 0.0
        print(
            f"{s.name:<10} {statistics.median(rps):>11,.0f} {statistics.median(ratios):>7.3f} "
            f"{'±' + format(spread, '.3f'):>8}  {s.description}"
        )
    print("(x bare: median over rounds of rps / that round's bare rps; spread: half the range)")
    costs = [p1.rps / p50.rps for p1, p50 in zip(results["page1"], results["page50"], strict=True)]
    cost = statistics.median(costs)
    print()
    print(
        f"page 50 cost / page 1 cost = rps(page1) / rps(page50) = {cost:.3f} "
        f"(per round: {', '.join(f'{c:.3f}' for c in costs)})"
    )
    passed = cost <= MAX_COST_RATIO
    verdict = "PASS" if passed else "FAIL"
    print(f"{verdict}: page 50 costs {cost:.2f}x page 1 (limit {MAX_COST_RATIO}x)")
    return passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured s per run [5]")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up s per run [1]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all scenarios [3]")
    parser.add_argument("--concurrency", type=int, default=16, help="connections [16]")
    parser.add_argument(
        "--max-requests", type=int, default=2_000_000, help="cap per run [2,000,000]"
    )
    parser.add_argument("--client", choices=CLIENTS, default="raw", help="load client [raw]")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL: an existing database to use (default: a fresh one, dropped after)",
    )
    parser.add_argument(
        "--postgres-admin",
        default=os.environ.get("OPENJULES_TEST_POSTGRES_URL", POSTGRES_ADMIN),
        help="PostgreSQL: where to CREATE/DROP the fresh database [%(default)s]",
    )
    parser.add_argument("--activities", type=int, default=ACTIVITIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.database_url and args.backend != "postgresql":
        parser.error("--database-url is for --backend postgresql")
    if args.rounds < 1 or args.seconds <= 0 or args.concurrency < 1:
        parser.error("--rounds, --seconds and --concurrency must be positive")
    if args.activities < PAGE_SIZE * (TARGET_PAGE + 1):
        parser.error(f"--activities must be at least {PAGE_SIZE * (TARGET_PAGE + 1)}")
    return args


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on SIGTERM as on Ctrl-C
    try:
        with contextlib.ExitStack() as stack:
            # Unwinds in reverse: servers stop, then the database and temp dir go.
            return run(args, stack)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    began = time.monotonic()
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openjules-bench-")))
    url = stack.enter_context(fresh_database(args, tmp))
    print(
        f"openjules API benchmark: {args.backend}, {args.activities:,} activities, "
        f"{args.rounds} rounds x {args.warmup:g}+{args.seconds:g} s per scenario, "
        f"{args.concurrency} connections, {args.client} client"
    )
    print(
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
        f"{os.cpu_count()} CPUs; one server process + this load process"
    )
    t0 = time.monotonic()
    key, session_id = seed(url, args.activities)
    print(f"Seeded session {session_id} in {time.monotonic() - t0:.1f} s")
    headers = {"X-Goog-Api-Key": key, "Accept": "application/json"}

    servers: dict[str, Server] = {}
    for name, extra in (
        ("bare", ["bare"]),
        (
            "openjules",
            [
                *("openjules", "--database-url", url, "--data-dir", str(tmp)),
                *("--public-base-url", PUBLIC_BASE_URL),
            ],
        ),
    ):
        servers[name] = start_server(name, extra, tmp / f"{name}.log")
        stack.callback(stop_server, servers[name])
    wait_ready(servers["bare"], "/healthz", headers, tmp / "bare.log")
    session_path = f"/v1alpha/sessions/{session_id}"
    wait_ready(servers["openjules"], session_path, headers, tmp / "openjules.log")

    list_path = f"{session_path}/activities"
    token = find_page_token(
        f"http://{HOST}:{servers['openjules'].port}{list_path}", headers, TARGET_PAGE
    )
    scenarios = [
        Scenario("bare", "bare", "/healthz", "bare Starlette JSON endpoint (baseline)"),
        Scenario("healthz", "openjules", "/healthz", "openjules /healthz: no auth, no DB"),
        Scenario("session", "openjules", session_path, "GET session"),
        Scenario("page1", "openjules", list_path, "activities list, page 1 (50 items)"),
        Scenario(
            "page50",
            "openjules",
            f"{list_path}?pageToken={token}",
            "activities list, page 50 (50 items)",
        ),
    ]
    results = measure(scenarios, servers, headers, args)
    passed = report(scenarios, results)
    print(f"({time.monotonic() - began:.0f} s in all)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
