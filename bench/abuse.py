"""Abuse benchmark (issue 9, acceptance 3): what hostile or careless clients cost the
server. Loopback only, bounded in time and memory; the real server (``bench/_serve.py``,
what ``openjules serve`` runs, SQLite) runs as a subprocess so its memory and stderr can be
read on their own.

Parts (each prints its figures next to its target and PASS or FAIL):
  bodies   100 concurrent 10 MB request bodies to POST /v1alpha/sessions: the server's
           RSS growth (VmHWM at the end minus VmRSS before, from /proc/PID/status) <= 100 MB
           and every request refused (a 4xx, or the connection closed before the body was
           taken); none accepted, none answered 5xx.
  slow     5,000 slow connections (each sends a request line and then one header line every
           few seconds, never the end of its headers) held for 30 s, while a normal client
           GETs a session back to back: its p99 latency <= 500 ms with no failed request,
           and the server's stderr grows by <= 1 MB.
  creates  100 concurrent session creates with OPENJULES_MAX_CONCURRENT_SESSIONS=32 (a
           scripted model that answers at once, so 32 sessions write while the API does):
           0 errors (non-200 creates, and "database is locked" in the server's stderr).

    .venv/bin/python bench/abuse.py [--quick] [--only bodies|slow|creates]

``--quick`` is a smoke run (fewer and shorter). Exit status: 0 all PASS, 1 a FAIL, 2 the
benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _process import stop_process
from openjules.http_protocol import raise_open_files_limit
from openjules.settings import Settings
from openjules.store.migrate import upgrade_to_head
from openjules.testing import provision_user
from openjules.testing.fake_model import FakeModel, Reply, ToolCall

HOST = "127.0.0.1"
SERVE_SCRIPT = Path(__file__).with_name("_serve.py")
START_TIMEOUT = 60.0
MB = 1024 * 1024

BODY_BYTES = 10 * MB
MAX_RSS_GROWTH_MB = 100.0
MAX_P99_MS = 500.0
MAX_STDERR_BYTES = MB
TRICKLE_EVERY_S = 5.0
CREATE_WORKERS = 32
STATE_WAIT_S = 120.0
RUNNING_STATES = {"QUEUED", "PLANNING", "IN_PROGRESS"}
# The parts that measure HTTP alone: no worker runs their sessions (there is no model).
NO_WORKERS = {"OPENJULES_MAX_CONCURRENT_SESSIONS": "0"}


class BenchError(RuntimeError):
    pass


@dataclass
class Sizes:
    bodies: int
    slow: int
    hold_s: float
    creates: int


FULL = Sizes(bodies=100, slow=5_000, hold_s=30.0, creates=100)
QUICK = Sizes(bodies=10, slow=500, hold_s=5.0, creates=20)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stderr: Path
    key: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server process, in kB."""
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
        return found

    def stderr_bytes(self) -> int:
        return self.stderr.stat().st_size


@contextlib.contextmanager
def running_server(tmp: Path, name: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``bench/_serve.py openjules`` on a fresh SQLite database, with one API key."""
    data = tmp / name
    data.mkdir()
    url = f"sqlite+aiosqlite:///{data / 'openjules.db'}"
    upgrade_to_head(url)
    key = provision_user(Settings(data_dir=data, database_url=url), name="bench")
    # main() has taken every OPENJULES_ variable out of the environment.
    child_env = {**os.environ, **(env or {})}
    stderr = tmp / f"{name}.err"
    server_args = ["--database-url", url, "--data-dir", str(data)]
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(SERVE_SCRIPT), "openjules", *server_args],
            stdin=subprocess.PIPE,  # closed when we exit: the server then shuts itself down
            stdout=subprocess.PIPE,
            stderr=err,
            env=child_env,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise BenchError(f"server did not start; see {stderr}:\n{stderr.read_text()[-2000:]}")
        server = Server(process=process, port=int(line), stderr=stderr, key=key)
        wait_ready(server)
        yield server
    finally:
        stop_process(process, timeout=15)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise BenchError(f"server exited:\n{server.stderr.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=5.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"server not ready after {START_TIMEOUT:.0f} s")
        time.sleep(0.1)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def row(label: str, figure: str, target: str, ok: bool) -> bool:
    print(f"  {label:<44} {figure:>16}   target {target:<12} {verdict(ok)}")
    return ok


# --- bodies --------------------------------------------------------------------------------


async def post_big(port: int, key: str, body: memoryview) -> str:
    """One POST of ``body``, written while watching for an early answer; returns the HTTP
    status, or "closed" when the server ends the connection without one."""
    reader, writer = await asyncio.open_connection(HOST, port)
    head = (
        f"POST /v1alpha/sessions HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Goog-Api-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    try:
        writer.write(head.encode())
        chunk = 256 * 1024
        for offset in range(0, len(body), chunk):
            if answer.done():
                break
            writer.write(body[offset : offset + chunk])
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        status_line = await asyncio.wait_for(answer, timeout=120)
        return status_line[9:12].decode()
    except (asyncio.IncompleteReadError, ConnectionError, OSError, TimeoutError):
        return "closed"
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def bench_bodies(tmp: Path, sizes: Sizes) -> bool:
    print(f"bodies: {sizes.bodies} concurrent {BODY_BYTES // MB} MB POST /v1alpha/sessions")
    # A valid create: only its size is wrong.
    body = memoryview(b'{"prompt": "' + b"x" * (BODY_BYTES - 14) + b'"}')
    with running_server(tmp, "bodies", NO_WORKERS) as server:
        before = server.status()

        async def run() -> list[str]:
            return list(
                await asyncio.gather(
                    *(post_big(server.port, server.key, body) for _ in range(sizes.bodies))
                )
            )

        started = time.perf_counter()
        outcomes = asyncio.run(run())
        seconds = time.perf_counter() - started
        after = server.status()
    growth_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    refused = sum(1 for o in outcomes if o == "closed" or o.startswith("4"))
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    print(f"  outcomes {counts} in {seconds:.1f} s; VmRSS before {before['VmRSS'] / 1024:.0f} MB")
    ok = row(
        "server RSS growth (peak - before)",
        f"{growth_mb:.0f} MB",
        "<= 100 MB",
        growth_mb <= MAX_RSS_GROWTH_MB,
    )
    ok &= row("requests refused", f"{refused}/{sizes.bodies}", "all", refused == sizes.bodies)
    return ok


# --- slow connections ----------------------------------------------------------------------


@dataclass
class SlowResult:
    opened: int = 0
    failed_to_open: int = 0
    all_open_at: float = 0.0  # perf_counter
    closed_after: list[float] = field(default_factory=list)


async def hold_slow(port: int, path: str, count: int, hold_s: float, result: SlowResult) -> None:
    """``count`` connections that each send a request line and then one header line every
    TRICKLE_EVERY_S seconds, never the blank line; held ``hold_s`` seconds once all are open."""
    loop = asyncio.get_running_loop()
    stop_at = 0.0
    all_open = asyncio.Event()

    async def one() -> None:
        started = loop.time()
        try:
            async with gate:
                reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            result.failed_to_open += 1
            if result.opened + result.failed_to_open == count:
                all_open.set()
            return
        result.opened += 1
        if result.opened + result.failed_to_open == count:
            all_open.set()
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
            while not stop_at or loop.time() < stop_at:
                wait = (
                    TRICKLE_EVERY_S if not stop_at else min(TRICKLE_EVERY_S, stop_at - loop.time())
                )
                try:
                    data = await asyncio.wait_for(reader.read(4096), max(wait, 0.0))
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                    continue
                if not data:  # closed by the server
                    result.closed_after.append(loop.time() - started)
                    return
        except (ConnectionError, OSError):
            result.closed_after.append(loop.time() - started)
        finally:
            writer.close()

    gate = asyncio.Semaphore(500)  # connects in flight at once
    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await all_open.wait()
    result.all_open_at = time.perf_counter()
    stop_at = loop.time() + hold_s
    await asyncio.gather(*tasks)


def measure_client(
    url: str, key: str, until: threading.Event
) -> tuple[list[tuple[float, float]], int]:
    """GET ``url`` back to back until ``until``; (start, latency) of each in seconds, and
    the number of failed requests."""
    latencies: list[tuple[float, float]] = []
    failures = 0
    with httpx.Client(headers={"X-Goog-Api-Key": key}, timeout=10.0) as client:
        while not until.is_set():
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((started, time.perf_counter() - started))
            failures += not ok
            time.sleep(0.01)
    return latencies, failures


def percentile(values: Sequence[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def raise_own_open_files(needed: int) -> None:
    if raise_open_files_limit() < needed:
        raise BenchError(f"needs {needed} open files; the hard limit is lower")


def bench_slow(tmp: Path, sizes: Sizes) -> bool:
    print(f"slow: {sizes.slow} slow connections held {sizes.hold_s:.0f} s; a normal client GETs")
    raise_own_open_files(sizes.slow + 1_000)
    with running_server(tmp, "slow", NO_WORKERS) as server:
        created = httpx.post(
            f"{server.url}/v1alpha/sessions",
            headers={"X-Goog-Api-Key": server.key},
            json={"prompt": "Abuse benchmark: the session a normal client reads."},
            timeout=30.0,
        )
        if created.status_code != 200:
            raise BenchError(f"create: HTTP {created.status_code} {created.text}")
        path = f"/v1alpha/sessions/{created.json()['id']}"
        stderr_before = server.stderr_bytes()
        result = SlowResult()
        done = threading.Event()
        measured: list[tuple[list[tuple[float, float]], int]] = []
        client = threading.Thread(
            target=lambda: measured.append(measure_client(server.url + path, server.key, done))
        )
        client.start()
        started = time.perf_counter()
        try:
            asyncio.run(hold_slow(server.port, path, sizes.slow, sizes.hold_s, result))
        finally:
            done.set()
            client.join()
        seconds = time.perf_counter() - started
        stderr_growth = server.stderr_bytes() - stderr_before
        alive = server.process.poll() is None
    timed, failures = measured[0]
    opening = [latency for at, latency in timed if at < result.all_open_at]
    latencies = [latency for at, latency in timed if at >= result.all_open_at]
    p99 = percentile(latencies, 99) * 1000
    closed = sorted(result.closed_after)
    print(
        f"  {result.opened} opened ({result.failed_to_open} failed) in "
        f"{result.all_open_at - started:.1f} s; {len(closed)} closed by the server"
        + (f" after {closed[0]:.1f}-{closed[-1]:.1f} s" if closed else "")
        + f"; {seconds:.1f} s in all"
    )
    print(
        f"  normal client while opening: {len(opening)} GETs, "
        f"p99 {percentile(opening, 99) * 1000:.0f} ms (not a target)"
    )
    print(
        f"  normal client while held: {len(latencies)} GETs, p50 "
        f"{percentile(latencies, 50) * 1000:.1f} ms, max {max(latencies, default=0) * 1000:.0f} ms"
    )
    ok = row("normal client GET session p99", f"{p99:.0f} ms", "<= 500 ms", p99 <= MAX_P99_MS)
    ok &= row("normal client failed requests", f"{failures}", "0", failures == 0)
    ok &= row(
        "server stderr growth", f"{stderr_growth} B", "<= 1 MB", stderr_growth <= MAX_STDERR_BYTES
    )
    ok &= row("server alive", str(alive), "True", alive)
    return ok


# --- concurrent creates --------------------------------------------------------------------

# The model plans one step, completes it and finishes: three model turns, each answered at
# once, and the writes of a whole session run.
SCRIPT = (
    Reply(
        tool_calls=[
            ToolCall("propose_plan", {"steps": [{"title": "Look", "description": "Look."}]})
        ]
    ),
    Reply(tool_calls=[ToolCall("complete_step", {"title": "Looked", "description": "Done."})]),
    Reply(
        tool_calls=[ToolCall("finish", {"summary": "Nothing to change.", "commit_message": "-"})]
    ),
)


def respond(body: dict[str, Any]) -> Reply:
    turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
    return SCRIPT[min(turn, len(SCRIPT) - 1)]


def bench_creates(tmp: Path, sizes: Sizes) -> bool:
    print(
        f"creates: {sizes.creates} concurrent creates, "
        f"OPENJULES_MAX_CONCURRENT_SESSIONS={CREATE_WORKERS}, SQLite"
    )
    with FakeModel(respond) as model:
        env = {
            "OPENJULES_MAX_CONCURRENT_SESSIONS": str(CREATE_WORKERS),
            "OPENJULES_MODEL_BASE_URL": model.base_url,
            "OPENJULES_MODEL_API_KEY": "sk-bench",
            "OPENJULES_MODEL": FakeModel.MODEL_NAME,
            "OPENJULES_MODEL_MAX_RETRIES": "0",
        }
        with running_server(tmp, "creates", env) as server:
            headers = {"X-Goog-Api-Key": server.key}

            async def create(client: httpx.AsyncClient, n: int) -> tuple[int, str]:
                try:
                    response = await client.post(
                        f"{server.url}/v1alpha/sessions",
                        json={"prompt": f"Abuse benchmark session {n}."},
                    )
                except httpx.HTTPError as exc:
                    return 0, repr(exc)
                return response.status_code, response.text

            async def run() -> list[tuple[int, str]]:
                limits = httpx.Limits(max_connections=sizes.creates)
                async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as c:
                    return list(await asyncio.gather(*(create(c, n) for n in range(sizes.creates))))

            started = time.perf_counter()
            answers = asyncio.run(run())
            seconds = time.perf_counter() - started
            ids = [_id(text) for status, text in answers if status == 200]
            states = wait_for_states(server, ids)
            locked = server.stderr.read_text(errors="replace").count("database is locked")
    bad = [(status, text[:200]) for status, text in answers if status != 200]
    print(f"  {len(answers)} creates in {seconds:.1f} s; session states after: {states}")
    if bad:
        print(f"  first error: {bad[0]}")
    ok = row("creates not answered 200", str(len(bad)), "0", not bad)
    ok &= row('"database is locked" in server stderr', str(locked), "0", locked == 0)
    return ok


def _id(text: str) -> str:
    return str(json.loads(text)["id"])


def wait_for_states(server: Server, ids: Sequence[str]) -> dict[str, int]:
    """Each session's state once none is queued or running (or STATE_WAIT_S passed)."""
    deadline = time.monotonic() + STATE_WAIT_S
    states: dict[str, int] = {}
    with httpx.Client(headers={"X-Goog-Api-Key": server.key}, timeout=30.0) as client:
        while True:
            found: list[str] = []
            for sid in ids:
                response = client.get(f"{server.url}/v1alpha/sessions/{sid}")
                found.append(response.json().get("state", f"HTTP {response.status_code}"))
            states = {s: found.count(s) for s in sorted(set(found))}
            if not RUNNING_STATES & set(found) or time.monotonic() > deadline:
                return states
            time.sleep(1.0)


# --- main ----------------------------------------------------------------------------------

PARTS = {"bodies": bench_bodies, "slow": bench_slow, "creates": bench_creates}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smaller, shorter smoke run")
    parser.add_argument("--only", choices=sorted(PARTS), action="append", help="run only these")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for name in [k for k in os.environ if k.startswith("OPENJULES_")]:
        del os.environ[name]  # the settings here are the whole configuration
    tmp = Path(tempfile.mkdtemp(prefix="openjules-abuse-"))
    results: dict[str, bool] = {}
    try:
        for name in args.only or list(PARTS):
            results[name] = PARTS[name](tmp, sizes)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("overall: " + ", ".join(f"{n} {verdict(ok)}" for n, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
