"""API throughput benchmark: requests/s as ratios to a bare Starlette JSON endpoint, then
the same API served by several processes (``--http-workers``) as ratios to one.

Seeds a fresh database with one user's 200 sessions, one of them holding 5,000
activities, serves the openjules app and a one-route Starlette app the same way (uvicorn,
loopback, log level warning, no access log), each in its own process, and drives them from
this process with a closed-loop keep-alive client. openjules runs no session
(max_concurrent_sessions=0), so a create only queues one. A second openjules server on the
same database runs with ``--http-workers 2`` through the code ``openjules serve
--http-workers 2`` runs (a supervising process and two serving processes on one port).
Each round measures every scenario: the one-worker server's, then the two-worker server's
(the order alternates), each openjules server started for its scenarios and stopped after,
so only one holds database connections at a time. The tables show medians over rounds.
Absolute numbers depend on the machine; the ratios are what to compare.

Scenarios (one HTTP worker):
  bare       GET /healthz on the bare Starlette app (the baseline, ratio 1.00)
  healthz    GET /healthz on openjules (framework and middleware only; a diagnostic)
  session    GET /v1alpha/sessions/{id}
  page1      GET /v1alpha/sessions/{id}/activities (default page size 50)
  page50     the same with the pageToken of page 50, found by walking nextPageToken
  sessions   GET /v1alpha/sessions (page 1, the default 30 of the user's sessions)
  create     POST /v1alpha/sessions with a small repoless session (it stays QUEUED)
Then w2:healthz, w2:session, ... the same on the two-process server (wN: with N).

Checks (issue 13's targets; one line each, PASS or FAIL): session >= 0.5x bare, page1 >=
0.3x, sessions >= 0.3x, create >= 0.2x, and page 50 costs no more than 1.5x page 1, i.e.
rps(page1) / rps(page50) <= 1.5. The two-process figures are reported, not checked: with
the load client on the same machine, what they can show is bounded by the cores the client
leaves free (the report says how many it used, and how far healthz, which touches no
database, scales: about the most any scenario can show here).

    .venv/bin/python bench/api.py [--seconds 5] [--rounds 3] [--concurrency 16]
    .venv/bin/python bench/api.py --backend postgresql [--database-url URL]
    .venv/bin/python bench/api.py --http-workers 1      # the one-worker part only

Exit status: 0 every check PASS, 1 a FAIL, 2 the benchmark could not run (errors, bad
responses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
from openjules.store.writer import ConnectionWriter

HOST = "127.0.0.1"
SERVE_SCRIPT = Path(__file__).with_name("_serve.py")
PUBLIC_BASE_URL = "http://bench.invalid"
ACTIVITIES = 5_000
BATCH = 500
PAGE_SIZE = 50  # the server's default for activities; the benchmark sends no pageSize
SESSIONS = 200  # the user's, so page 1 of the sessions list is a full default page (30)
TARGET_PAGE = 50
MAX_COST_RATIO = 1.5
# Issue 13's targets: requests/s of each scenario at least this times bare's.
MIN_RATIOS = {"session": 0.5, "page1": 0.3, "sessions": 0.3, "create": 0.2}
CREATE_BODY = b'{"prompt": "Benchmark: a small repoless session that stays queued."}'
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
START_TIMEOUT = 60.0


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # "bare", "openjules" or "workers"
    path: str
    description: str
    method: str = "GET"
    body: bytes = b""


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path


@dataclass(frozen=True)
class Usage:
    """CPU cores kept busy on average during one run: by the server's processes, and by
    the whole machine (the load client, the database server and anything else included)."""

    server: float
    machine: float


TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its children that are alive (the
    serving processes of ``--http-workers``; ended ones count in the parent)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "pid (comm)": state ppid ... utime(12th) stime cutime cstime.
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += sum(int(f) for f in fields[11:15]) / TICKS
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


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
            for n in range(SESSIONS - 1):
                await session_store.create(
                    conn,
                    owner_id=user.id,
                    request=CreateSessionRequest(
                        prompt=f"Benchmark session {n + 1}: list me.", title=f"Listed {n + 1}"
                    ),
                )
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
                    ConnectionWriter(conn),
                    session_id=session.id,
                    event=Event.USER_MESSAGED,
                    new_activities=batch,
                )
        return key.secret, session.id
    finally:
        await db.dispose()


def seed(url: str, activities: int) -> tuple[str, str]:
    """Migrate, then one user, one key, SESSIONS QUEUED sessions, the newest with
    ``activities`` activities."""
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
    return Server(name=name, process=process, port=int(line), log=log)


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


def wait_listening(server: Server, log: Path) -> None:
    """Until the server says every one of its processes listens (``_serve.py``)."""
    assert server.process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{server.name} server not listening after {START_TIMEOUT:.0f} s")
        ready, _, _ = select.select([server.process.stdout], [], [], left)
        if not ready:
            continue
        line = server.process.stdout.readline()
        if not line:
            raise BenchError(f"{server.name} server exited; see {log}:\n{log.read_text()[-2000:]}")
        if line.strip() == b"listening":
            return


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


@dataclass
class Launcher:
    """Starts and stops the benchmark's servers by name. The openjules servers run one at a
    time: on PostgreSQL each serving process keeps pooled connections, and two servers'
    worth (three processes) under load can pass max_connections (100 by default)."""

    tmp: Path
    commands: dict[str, list[str]]
    headers: dict[str, str]
    ready_path: str
    running: dict[str, Server] = field(default_factory=dict)

    def start(self, name: str) -> Server:
        log = self.tmp / f"{name}.log"
        server = self.running[name] = start_server(name, self.commands[name], log)
        if name == "bare":
            wait_ready(server, "/healthz", self.headers, log)
        else:
            wait_listening(server, log)
            wait_ready(server, self.ready_path, self.headers, log)
        return server

    def stop(self, name: str) -> None:
        server = self.running.pop(name, None)
        if server is not None:
            stop_server(server)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def run_scenario(
    scenario: Scenario, server: Server, headers: dict[str, str], args: argparse.Namespace
) -> tuple[LoadResult, Usage]:
    target = Target(
        HOST, server.port, scenario.path, headers, method=scenario.method, body=scenario.body
    )
    server_before, (busy_before, _) = _process_cpu(server.process.pid), _machine_busy()
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
        log = server.log.read_text(errors="replace")[-3000:]
        raise BenchError(
            f"{scenario.name}: {result.errors} failed requests "
            f"(first: {result.first_error}); the server's log ends:\n{log}"
        )
    if result.requests == 0:
        raise BenchError(f"{scenario.name}: no request completed")
    busy, _ = _machine_busy()
    wall = max(result.wall_seconds, 1e-9)
    used = Usage(
        server=(_process_cpu(server.process.pid) - server_before) / wall,
        machine=(busy - busy_before) / wall,
    )
    return result, used


def measure(
    phases: Sequence[Sequence[Scenario]],
    launcher: Launcher,
    args: argparse.Namespace,
    usage: dict[str, list[Usage]],
) -> dict[str, list[LoadResult]]:
    """Every scenario once per round, a phase (the scenarios of one openjules server) at a
    time, its server started for it and stopped after; ``usage`` gets each run's CPU use."""
    results: dict[str, list[LoadResult]] = {s.name: [] for p in phases for s in p}
    for round_no in range(args.rounds):
        line = []
        # Rotate the order of phases and of scenarios in each so drift in machine load
        # spreads over all of them.
        order = [*phases[round_no % len(phases) :], *phases[: round_no % len(phases)]]
        for phase in order:
            shift = round_no % len(phase)
            names = {s.server for s in phase} - {"bare"}
            for name in names:
                launcher.start(name)
            try:
                for scenario in [*phase[shift:], *phase[:shift]]:
                    server = launcher.running[scenario.server]
                    result, used = run_scenario(scenario, server, launcher.headers, args)
                    usage.setdefault(scenario.name, []).append(used)
                    results[scenario.name].append(result)
                    line.append(f"{scenario.name} {result.rps:,.0f}")
            finally:
                for name in names:
                    launcher.stop(name)
        print(f"  round {round_no + 1}/{args.rounds}: " + ", ".join(line) + " req/s", flush=True)
    return results


def _ratios(results: Sequence[LoadResult], baseline: Sequence[LoadResult]) -> list[float]:
    """Each round's rps over that round's baseline rps."""
    return [r.rps / b.rps for r, b in zip(results, baseline, strict=True)]


def _spread(values: Sequence[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def report(scenarios: Sequence[Scenario], results: dict[str, list[LoadResult]]) -> bool:
    """The one-worker table and the checks; True if every check passes."""
    baseline = results["bare"]
    print()
    print(f"{'scenario':<10} {'requests/s':>11} {'x bare':>7} {'spread':>8}  what")
    ratio_of: dict[str, float] = {}
    for s in scenarios:
        rps = [r.rps for r in results[s.name]]
        ratios = _ratios(results[s.name], baseline)
        ratio_of[s.name] = statistics.median(ratios)
        print(
            f"{s.name:<10} {statistics.median(rps):>11,.0f} {ratio_of[s.name]:>7.3f} "
            f"{'±' + format(_spread(ratios), '.3f'):>8}  {s.description}"
        )
    print("(x bare: median over rounds of rps / that round's bare rps; spread: half the range)")
    print()
    passed = True
    for name, least in MIN_RATIOS.items():
        ok = ratio_of[name] >= least
        passed &= ok
        print(
            f"{'PASS' if ok else 'FAIL'}: {name} at {ratio_of[name]:.3f}x bare "
            f"(target at least {least}x)"
        )
    costs = [p1.rps / p50.rps for p1, p50 in zip(results["page1"], results["page50"], strict=True)]
    cost = statistics.median(costs)
    ok = cost <= MAX_COST_RATIO
    passed &= ok
    print(
        f"{'PASS' if ok else 'FAIL'}: page 50 costs {cost:.2f}x page 1 = rps(page1) / "
        f"rps(page50) (limit {MAX_COST_RATIO}x; per round: "
        f"{', '.join(f'{c:.3f}' for c in costs)})"
    )
    return passed


def report_workers(
    scenarios: Sequence[Scenario],
    results: dict[str, list[LoadResult]],
    usage: dict[str, list[Usage]],
    processes: int,
) -> None:
    """Each scenario on the ``processes``-process server as a ratio to one process, and
    where the machine's CPU went meanwhile."""
    cores = os.cpu_count() or 1
    n = f"{processes}w"
    print()
    print(f"--http-workers {processes}, as a ratio to one HTTP worker (same rounds):")
    print(
        f"{'scenario':<10} {'rps 1w':>8} {'rps ' + n:>8} {'ratio':>7} {'spread':>8}  "
        f"{'server 1w':>9} {'server ' + n:>9} {'client':>7} {'machine':>8}"
    )
    ratio_of: dict[str, float] = {}
    spare: list[float] = []
    for s in scenarios:
        name = s.name.split(":", 1)[1]
        many, one = results[s.name], results[name]
        ratios = _ratios(many, one)
        ratio_of[name] = statistics.median(ratios)
        client = statistics.median(r.client_cores for r in many)
        server_one = statistics.median(u.server for u in usage[name])
        server_many = statistics.median(u.server for u in usage[s.name])
        machine = statistics.median(u.machine for u in usage[s.name])
        spare.append(cores - machine)
        print(
            f"{name:<10} {statistics.median(r.rps for r in one):>8,.0f} "
            f"{statistics.median(r.rps for r in many):>8,.0f} {ratio_of[name]:>7.3f} "
            f"{'±' + format(_spread(ratios), '.3f'):>8}  {server_one:>8.2f}c "
            f"{server_many:>8.2f}c {client:>6.2f}c {machine:>7.2f}c"
        )
    print(
        "(ratio: median over rounds of rps with N workers / rps with one in that round; CPU "
        "cores kept busy on average: server (all its processes), client (this load "
        f"process) in the {n} runs, and the whole machine in the {n} runs: the database "
        "server and other programs included)"
    )
    idle = statistics.median(spare)
    print(
        f"Note: {cores} CPU cores for the load client, the server, the database and "
        f"whatever else runs here; during the {n} runs about {idle:.2f} of them were idle. "
        f"healthz (no auth, no database) went {ratio_of['healthz']:.2f}x: about the most "
        "any scenario can show on this machine. A ratio near it means the API scales as far "
        "as can be measured here (more cores, or the client elsewhere, would show more); "
        "one well below it, that the processes wait on each other (a lock, the database) "
        "rather than on CPU."
        + (
            " The machine had no idle core left: the ratios show how the CPU was shared "
            "more than how far the API scales."
            if idle < 0.25
            else ""
        )
    )


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
        "--http-workers",
        type=int,
        default=2,
        help="processes of the second openjules server, compared with one; 1: no second server [2]",
    )
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
    if args.rounds < 1 or args.seconds <= 0 or args.concurrency < 1 or args.http_workers < 1:
        parser.error("--rounds, --seconds, --concurrency and --http-workers must be positive")
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


def openjules_scenarios(server: str, prefix: str, session_path: str, token: str) -> list[Scenario]:
    list_path = f"{session_path}/activities"
    return [
        Scenario(f"{prefix}healthz", server, "/healthz", "openjules /healthz: no auth, no DB"),
        Scenario(f"{prefix}session", server, session_path, "GET session"),
        Scenario(f"{prefix}page1", server, list_path, "activities list, page 1 (50 items)"),
        Scenario(
            f"{prefix}page50",
            server,
            f"{list_path}?pageToken={token}",
            "activities list, page 50 (50 items)",
        ),
        Scenario(f"{prefix}sessions", server, "/v1alpha/sessions", "sessions list, page 1 (30)"),
        Scenario(
            f"{prefix}create",
            server,
            "/v1alpha/sessions",
            "create a repoless session (stays QUEUED)",
            method="POST",
            body=CREATE_BODY,
        ),
    ]


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    began = time.monotonic()
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openjules-bench-")))
    url = stack.enter_context(fresh_database(args, tmp))
    many = args.http_workers > 1
    print(
        f"openjules API benchmark: {args.backend}, {SESSIONS} sessions, {args.activities:,} "
        f"activities, {args.rounds} rounds x {args.warmup:g}+{args.seconds:g} s per scenario, "
        f"{args.concurrency} connections, {args.client} client"
    )
    print(
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
        f"{os.cpu_count()} CPUs; one server process at a time + this load process"
        + (f"; then --http-workers {args.http_workers}" if many else "")
    )
    t0 = time.monotonic()
    key, session_id = seed(url, args.activities)
    print(f"Seeded session {session_id} in {time.monotonic() - t0:.1f} s")
    headers = {"X-Goog-Api-Key": key, "Accept": "application/json"}

    openjules = [
        *("openjules", "--database-url", url, "--data-dir", str(tmp)),
        *("--public-base-url", PUBLIC_BASE_URL),
    ]
    session_path = f"/v1alpha/sessions/{session_id}"
    launcher = Launcher(
        tmp=tmp,
        commands={
            "bare": ["bare"],
            "openjules": openjules,
            "workers": [*openjules, "--http-workers", str(args.http_workers)],
        },
        headers=headers,
        ready_path=session_path,
    )
    stack.callback(launcher.stop_all)
    launcher.start("bare")
    server = launcher.start("openjules")
    token = find_page_token(
        f"http://{HOST}:{server.port}{session_path}/activities", headers, TARGET_PAGE
    )
    launcher.stop("openjules")
    one = [
        Scenario("bare", "bare", "/healthz", "bare Starlette JSON endpoint (baseline)"),
        *openjules_scenarios("openjules", "", session_path, token),
    ]
    prefix = f"w{args.http_workers}:"
    several = openjules_scenarios("workers", prefix, session_path, token) if many else []
    usage: dict[str, list[Usage]] = {}
    results = measure([one, several] if many else [one], launcher, args, usage)
    passed = report(one, results)
    if many:
        report_workers(several, results, usage, args.http_workers)
    print(f"({time.monotonic() - began:.0f} s in all)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
