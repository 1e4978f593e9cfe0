"""Live streams (``alt=sse``): how soon a committed activity reaches a watching client,
and what 1,000 open streams cost one API process.

Three measurements, each against an openjules server process started the way
``openjules serve`` runs (``bench/_serve.py``, no engine workers, so nothing but the
benchmark writes):

  latency, in-process, SQLite   the API process itself commits the activity (a
                                sendMessage); one stream receives it
  latency, cross-process, PG    this process commits it (the transition table, as an
                                ``openjules worker`` does); the API hears it through
                                LISTEN/NOTIFY; one stream receives it
  fan-out, PG                   1,000 streams open on one session of one API process;
                                this process commits an activity: the time until the
                                last stream has it, the API process's RSS growth, and
                                the database connections the API process holds

Latency is measured from the activity's createTime (taken inside the transaction,
before the commit, so it is an upper bound) to the moment the event's bytes arrived;
for the cross-process case also from the moment the writer's commit returned. Clients
are raw asyncio sockets (an HTTP client per stream would cost more than the server).

    .venv/bin/python bench/stream.py [--samples 200] [--streams 1000] [--fanouts 5]

Targets: p95 <= 50 ms cross-process on PostgreSQL; all 1,000 streams served within 1 s
of the commit; RSS growth <= 150 MB; the API's connections do not grow with streams.
Exit status: 0 PASS, 1 FAIL, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from _postgres import BenchError, postgres_database
from _process import stop_process
from openjules._types import CreateSessionRequest, Originator, UserMessaged
from openjules.http_protocol import raise_open_files_limit
from openjules.store import sessions as session_store
from openjules.store import transitions, users
from openjules.store.activities import NewActivity
from openjules.store.clock import parse_timestamp_ns
from openjules.store.database import POOL_SIZE, Database
from openjules.store.migrate import upgrade_to_head
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter

HOST = "127.0.0.1"
SERVE_SCRIPT = Path(__file__).with_name("_serve.py")
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# This process's own connections, told apart from the API process's in pg_stat_activity.
BENCH_APPLICATION = "openjules-bench-writer"
START_TIMEOUT_S = 60.0
WAIT_S = 30.0
OPEN_CONCURRENCY = 100
TARGET_P95_MS = 50.0
TARGET_FANOUT_S = 1.0
TARGET_RSS_MB = 150.0
MARKER = b"event: activity"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path


# --- databases and the server -------------------------------------------------------------


async def seed(url: str) -> tuple[str, str]:
    """One user, one key, one QUEUED session (no worker runs it)."""
    db = Database(url)
    try:
        async with db.write() as conn:
            user = await users.get_or_create_user(conn, name=f"bench-{secrets.token_hex(4)}")
            key = await users.create_key(conn, user=user, max_live_keys=3)
            session = await session_store.create(
                conn, owner_id=user.id, request=CreateSessionRequest(prompt="Stream benchmark")
            )
        return key.secret, session.id
    finally:
        await db.dispose()


@contextlib.contextmanager
def server(url: str, tmp: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}
    env["OPENJULES_MAX_CONCURRENT_SESSIONS"] = "0"  # nothing but the benchmark writes
    log = tmp / f"server-{secrets.token_hex(3)}.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                str(SERVE_SCRIPT),
                "openjules",
                "--database-url",
                url,
                "--data-dir",
                str(tmp / "data"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise BenchError(f"the server did not start; see {log}:\n{log.read_text()[-2000:]}")
        running = Server(process=process, port=int(line), log=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise BenchError(f"the server exited; see {log}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{HOST}:{running.port}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError("the server was not ready in time")
            time.sleep(0.1)
        yield running
    finally:
        stop_process(process, timeout=15)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS")


def api_connections(admin: str, database: str) -> int:
    """Connections to ``database`` that are not this process's (the API process's)."""
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name <> %s AND pid <> pg_backend_pid()",
            (database, BENCH_APPLICATION),
        ).fetchone()
    return int(row[0]) if row else 0


# --- a raw SSE client -----------------------------------------------------------------------


class RawStream:
    """One ``alt=sse`` stream over a plain socket: counts activity events as they arrive
    and keeps the data of each (for the latency runs)."""

    def __init__(self, port: int, path: str, key: str, *, keep_data: bool) -> None:
        self.port, self.path, self.key, self.keep_data = port, path, key, keep_data
        self.count = 0
        self.received: list[tuple[int, bytes]] = []  # (arrival ns, data line)
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        self._writer = writer
        writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {HOST}\r\nX-Goog-Api-Key: {self.key}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"stream refused: {head[:200]!r}")
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        tail = b""
        while chunk := await reader.read(65536):
            arrived = time.time_ns()
            data = tail + chunk
            if self.keep_data:
                *lines, tail = data.split(b"\n")
                for line in lines:
                    if line.startswith(b"data: "):
                        self.received.append((arrived, line[6:]))
                        self.count += 1
            else:
                self.count += data.count(MARKER)
                tail = data[-(len(MARKER) - 1) :]
            self.changed.set()

    async def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.count < count:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"a stream had {self.count} events, waited for {count}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.changed.wait()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --- measurements ----------------------------------------------------------------------------


async def latency_in_process(port: int, key: str, sid: str, samples: int) -> list[float]:
    """The API process commits (sendMessage); ms from createTime to arrival."""
    watcher = RawStream(port, f"/v1alpha/sessions/{sid}/activities?alt=sse", key, keep_data=True)
    await watcher.open()
    base = f"http://{HOST}:{port}/v1alpha"
    try:
        async with httpx.AsyncClient(headers={"X-Goog-Api-Key": key}, timeout=30) as client:
            for n in range(samples):
                answer = await client.post(
                    f"{base}/sessions/{sid}:sendMessage", json={"prompt": f"sample {n}"}
                )
                if answer.status_code != 200:
                    raise BenchError(f"sendMessage: {answer.status_code} {answer.text}")
                await watcher.wait_for(n + 1)
                await asyncio.sleep(0.005)
    finally:
        await watcher.close()
    return [
        (arrived - parse_timestamp_ns(json.loads(data)["createTime"])) / 1e6
        for arrived, data in watcher.received
    ]


async def commit_activity(db: Database, sid: str, text: str) -> int:
    """Commit one activity as a worker would; the time (ns) the commit returned."""
    activity = NewActivity(kind=UserMessaged(user_message=text), originator=Originator.USER)
    async with db.write() as conn:
        await transitions.apply(
            ConnectionWriter(conn),
            session_id=sid,
            event=Event.USER_MESSAGED,
            new_activities=[activity],
        )
    return time.time_ns()


def writer_database(url: str) -> Database:
    return Database(f"{url}?application_name={BENCH_APPLICATION}")


async def latency_cross_process(
    port: int, url: str, key: str, sid: str, samples: int
) -> tuple[list[float], list[float]]:
    """This process commits; ms from createTime and from the commit's return to arrival."""
    watcher = RawStream(port, f"/v1alpha/sessions/{sid}/activities?alt=sse", key, keep_data=True)
    await watcher.open()
    db = writer_database(url)
    committed: list[int] = []
    try:
        for n in range(samples):
            committed.append(await commit_activity(db, sid, f"sample {n}"))
            await watcher.wait_for(n + 1)
            await asyncio.sleep(0.005)
    finally:
        await watcher.close()
        await db.dispose()
    from_create = [
        (arrived - parse_timestamp_ns(json.loads(data)["createTime"])) / 1e6
        for arrived, data in watcher.received
    ]
    from_commit = [
        (arrived - done) / 1e6
        for (arrived, _), done in zip(watcher.received, committed, strict=True)
    ]
    return from_create, from_commit


@dataclass
class FanOut:
    open_s: float
    all_received_s: list[float]
    rss_before_mb: float
    rss_after_mb: float
    connections_before: int
    connections_by_streams: dict[int, int]
    connections_after: int


async def fan_out(
    running: Server, url: str, admin: str, key: str, sid: str, *, streams: int, fanouts: int
) -> FanOut:
    database = url.rsplit("/", 1)[1]
    path = f"/v1alpha/sessions/{sid}/activities?alt=sse"
    db = writer_database(url)
    # One stream and one activity first, so the hub and its pools exist before the baseline.
    probe = RawStream(running.port, path, key, keep_data=False)
    await probe.open()
    await commit_activity(db, sid, "warm-up")
    await probe.wait_for(1)
    await probe.close()
    await asyncio.sleep(0.5)
    rss_before = rss_mb(running.process.pid)
    connections_before = api_connections(admin, database)

    watchers = [RawStream(running.port, path, key, keep_data=False) for _ in range(streams)]
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(watcher: RawStream) -> None:
        async with gate:
            await watcher.open()

    started = time.monotonic()
    counted: dict[int, int] = {}
    try:
        # A tenth first, then the rest: the connections held must be the same for both.
        for upto in (streams // 10, streams):
            await asyncio.gather(
                *(open_one(w) for w in watchers[len(counted) and streams // 10 : upto])
            )
            # Every stream has the history (the warm-up activity): all are live now.
            await asyncio.gather(*(w.wait_for(1) for w in watchers[:upto]))
            await asyncio.sleep(0.5)
            counted[upto] = api_connections(admin, database)
        open_s = time.monotonic() - started
        times: list[float] = []
        for n in range(fanouts):
            await commit_activity(db, sid, f"fan-out {n}")
            committed = time.monotonic()
            await asyncio.gather(*(w.wait_for(n + 2) for w in watchers))
            times.append(time.monotonic() - committed)
            await asyncio.sleep(0.2)
        rss_after = rss_mb(running.process.pid)
        connections_after = api_connections(admin, database)
    finally:
        await asyncio.gather(*(w.close() for w in watchers))
        await db.dispose()
    return FanOut(
        open_s=open_s,
        all_received_s=times,
        rss_before_mb=rss_before,
        rss_after_mb=rss_after,
        connections_before=connections_before,
        connections_by_streams=counted,
        connections_after=connections_after,
    )


# --- the report ----------------------------------------------------------------------------


def summary(name: str, values: list[float]) -> str:
    return (
        f"  {name:<44} p50 {statistics.median(values):7.2f} ms   "
        f"p95 {percentile(values, 0.95):7.2f} ms   max {max(values):7.2f} ms   n={len(values)}"
    )


def run(args: argparse.Namespace) -> bool:
    raise_open_files_limit()  # 1,000 client sockets in this process
    ok = True
    with tempfile.TemporaryDirectory(prefix="openjules-bench-stream-") as tmp_name:
        tmp = Path(tmp_name)
        print("activity commit -> SSE receipt")
        url = f"sqlite+aiosqlite:///{tmp / 'openjules.db'}"
        upgrade_to_head(url)
        key, sid = asyncio.run(seed(url))
        with server(url, tmp) as running:
            local = asyncio.run(latency_in_process(running.port, key, sid, args.samples))
        print(summary("in-process writer, SQLite (from createTime)", local))

        with postgres_database(args.postgres_admin) as pg_url:
            upgrade_to_head(pg_url)
            key, sid = asyncio.run(seed(pg_url))
            with server(pg_url, tmp) as running:
                from_create, from_commit = asyncio.run(
                    latency_cross_process(running.port, pg_url, key, sid, args.samples)
                )
                print(summary("other-process writer, PostgreSQL (createTime)", from_create))
                print(summary("other-process writer, PostgreSQL (commit)", from_commit))
                p95 = percentile(from_create, 0.95)
                ok &= p95 <= TARGET_P95_MS
                print(
                    f"  check: p95 {p95:.2f} ms <= {TARGET_P95_MS:.0f} ms: "
                    f"{'PASS' if p95 <= TARGET_P95_MS else 'FAIL'}"
                )

            key, sid = asyncio.run(seed(pg_url))
            with server(pg_url, tmp) as running:
                result = asyncio.run(
                    fan_out(
                        running,
                        pg_url,
                        args.postgres_admin,
                        key,
                        sid,
                        streams=args.streams,
                        fanouts=args.fanouts,
                    )
                )
        worst = max(result.all_received_s)
        growth = result.rss_after_mb - result.rss_before_mb
        print(f"\n{args.streams} streams on one session, one API process (PostgreSQL)")
        print(f"  opened and live in {result.open_s:.2f} s")
        print(
            "  commit -> last stream received: "
            + ", ".join(f"{t * 1000:.0f} ms" for t in result.all_received_s)
            + f" (worst {worst * 1000:.0f} ms)"
        )
        print(
            f"  API RSS: {result.rss_before_mb:.1f} MB -> {result.rss_after_mb:.1f} MB "
            f"(+{growth:.1f} MB)"
        )
        by_streams = result.connections_by_streams
        print(
            f"  API database connections (pg_stat_activity): {result.connections_before} "
            "with no stream, "
            + ", ".join(f"{c} with {n} streams open" for n, c in by_streams.items())
            + f", {result.connections_after} after the fan-outs"
        )
        checks = [
            (f"all streams within {TARGET_FANOUT_S:.0f} s", worst <= TARGET_FANOUT_S),
            (f"RSS growth <= {TARGET_RSS_MB:.0f} MB", growth <= TARGET_RSS_MB),
            # At most what the two pools retain plus the listener: never one per stream.
            (
                f"connections within the pools (<= {2 * POOL_SIZE + 1}) at any stream count",
                max(*by_streams.values(), result.connections_after) <= 2 * POOL_SIZE + 1,
            ),
        ]
        for name, passed in checks:
            print(f"  check: {name}: {'PASS' if passed else 'FAIL'}")
            ok &= passed
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--fanouts", type=int, default=5)
    parser.add_argument("--postgres-admin", default=POSTGRES_ADMIN)
    args = parser.parse_args()
    try:
        ok = run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print("\nPASS" if ok else "\nFAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
