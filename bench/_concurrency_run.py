"""One batch of bench/concurrency.py: sessions started at once (creates, completion, the
GET poller, the checks, the costs)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import resource
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from _procfs import Sampler, cpu_seconds, sample
from _scripted import BenchError, missing_edits, session_patch
from _servers import ModelProcess, ServerProcess, wait_quiet
from _turns import SessionTurns, read_answers, split

BATCH_TIMEOUT = 600.0
LIST_EVERY = 0.5  # s between the list requests that watch a batch
CREATE_ATTEMPTS = 5


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@dataclass
class BatchResult:
    count: int
    wall: float  # creates sent -> last COMPLETED (its updateTime)
    creates: float  # creates sent -> last create answered
    cpu: float  # server tree CPU s, creates -> quiet, less an idle server's meanwhile again
    cpu_during: float  # server tree CPU s during the wall time
    own_cpu: float  # the busiest process of the tree alone (all its threads), creates -> quiet
    model_cpu: float  # the fake model's process, the same time
    bench_cpu: float  # this process (creates, watching, polling), the same time
    peak_memory: int  # PSS of the server's tree
    peak_rss: int  # RSS of the server process
    peak_processes: int
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # GET session, seconds
    poll_errors: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    turns: list[SessionTurns] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def line(self, *, baseline: float) -> str:
        text = (
            f"{self.count:>3} sessions: wall {self.wall:6.2f} s ({self.wall / baseline:.2f}x), "
            f"creates {self.creates:.2f} s, peak memory {self.peak_memory / 2**20:,.0f} MB "
            f"(server RSS {self.peak_rss / 2**20:,.0f} MB), "
            f"CPU {self.cpu / self.count:.3f} s/session ({self.own_cpu / self.count:.3f} in the "
            f"busiest process; the model {self.model_cpu:.1f} s, the client "
            f"{self.bench_cpu:.1f} s in all)"
        )
        if self.latencies:
            text += (
                f", GET p50 {self.percentile(50) * 1000:.1f} ms p99 "
                f"{self.percentile(99) * 1000:.1f} ms"
            )
        if self.refusals:
            text += f", {len(self.refusals)} creates refused (first: {self.refusals[0]})"
        if self.poll_errors:
            text += f", {len(self.poll_errors)} GETs failed (first: {self.poll_errors[0]})"
        if self.failures:
            text += f"; {len(self.failures)} FAILED: {self.failures[0]}"
        return text


async def _poll(
    client: httpx.AsyncClient, ids: list[str], rate: float, done: asyncio.Event
) -> tuple[list[float], list[str]]:
    """GET the sessions round robin at ``rate`` per second, open loop (a slow answer does
    not delay the next request), until ``done``: the latencies of the answers (200) and
    what went wrong with the others (a refused or dropped connection, an error status)."""
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()

    async def one(sid: str) -> None:
        began = time.perf_counter()
        try:
            response = await client.get(f"/sessions/{sid}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__} {exc}".strip())
            return
        if response.status_code != 200:
            errors.append(f"HTTP {response.status_code}")
            return
        latencies.append(time.perf_counter() - began)

    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    for n, sid in enumerate(itertools.cycle(ids)):
        if done.is_set():
            break
        delay = start + n / rate - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), delay)
            if done.is_set():
                break
        task = asyncio.create_task(one(sid))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return latencies, errors


@dataclass
class _Seen:
    sent: float  # time.time() when the creates were sent
    creates: float  # s until the last create was answered
    finals: list[dict[str, Any]]  # each session once all ended
    latencies: list[float]
    errors: list[str]
    refusals: list[str]  # creates answered 503/429 (then retried)


# Connections idle this long are not reused: the server closes them after 5 s (uvicorn's
# keep-alive timeout), and a request sent on one as it closes fails.
KEEPALIVE_EXPIRY = 2.0
POLL_CONNECTIONS = 8


def _client(api: str, key: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    return httpx.AsyncClient(
        base_url=api, headers={"X-Goog-Api-Key": key}, timeout=60.0, limits=limits
    )


async def _batch(api: str, *, key: str, source: str, tags: list[str], poll_rate: float) -> _Seen:
    count = len(tags)
    async with _client(api, key, count + 4) as client, _client(api, key, POLL_CONNECTIONS) as poll:
        context = {"source": source, "githubRepoContext": {"startingBranch": "main"}}
        bodies = [
            {
                "prompt": f"Benchmark session {tag}: make the three planned changes.",
                "sourceContext": context,
            }
            for tag in tags
        ]
        refusals: list[str] = []

        async def create(body: dict[str, Any]) -> httpx.Response:
            """As the SDKs do: a 503 or 429 is retried after its Retry-After."""
            for _ in range(CREATE_ATTEMPTS - 1):
                answer = await client.post("/sessions", json=body)
                if answer.status_code not in (429, 503):
                    return answer
                refusals.append(f"HTTP {answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            return await client.post("/sessions", json=body)

        sent = time.time()
        answers = await asyncio.gather(*(create(b) for b in bodies))
        creates = time.time() - sent
        bad = [a for a in answers if a.status_code != 200]
        if bad:
            raise BenchError(
                f"{len(bad)} of {count} creates failed; first: HTTP {bad[0].status_code} "
                f"{bad[0].text[:300]}"
            )
        ids = [a.json()["id"] for a in answers]
        done = asyncio.Event()
        poller = asyncio.create_task(_poll(poll, ids, poll_rate, done)) if poll_rate else None
        deadline = time.monotonic() + BATCH_TIMEOUT
        try:
            while True:
                page = await client.get("/sessions", params={"pageSize": 100})
                sessions = page.json().get("sessions", [])
                states = {s["id"]: s["state"] for s in sessions}
                if len(states) >= count and all(
                    states.get(i) in ("COMPLETED", "FAILED") for i in ids
                ):
                    break
                if time.monotonic() > deadline:
                    waiting = sum(1 for i in ids if states.get(i) not in ("COMPLETED", "FAILED"))
                    raise BenchError(
                        f"{waiting} of {count} sessions not ended after {BATCH_TIMEOUT:.0f} s"
                    )
                await asyncio.sleep(LIST_EVERY)
        finally:
            done.set()
            latencies, errors = await poller if poller is not None else ([], [])
        finals = await asyncio.gather(*(client.get(f"/sessions/{i}") for i in ids))
        return _Seen(sent, creates, [f.json() for f in finals], latencies, errors, refusals)


def run_batch(
    server: ServerProcess,
    *,
    model: ModelProcess,
    key: str,
    source: str,
    count: int,
    sampler: Sampler,
    poll_rate: float,
    idle_cores: float = 0.0,
) -> BatchResult:
    """Start ``count`` sessions at once and measure them (see bench/concurrency.py)."""
    if count > 100:
        raise BenchError("a batch is watched through one page of the sessions list: <= 100")
    wait_quiet(server)
    sampler.reset()
    before = sample(server.pid)
    started = time.monotonic()
    model_before, bench_before = cpu_seconds(model.pid), _own_cpu()
    batch = secrets.token_hex(3)
    tags = [f"{batch}-{n}" for n in range(count)]
    seen = asyncio.run(_batch(server.api, key=key, source=source, tags=tags, poll_rate=poll_rate))
    sent, finals = seen.sent, seen.finals
    at_end = sample(server.pid)
    ended = [_epoch(s["updateTime"]) for s in finals]
    wall = max(ended) - sent
    # CPU during the wall time: what the server had used when this process saw the end,
    # less what it used after the last COMPLETED (at most LIST_EVERY s, not counted).
    cpu_during = at_end.cpu - before.cpu
    quiet = wait_quiet(server)
    idle = idle_cores * (time.monotonic() - started)  # what an idle server uses meanwhile
    model_cpu, bench_cpu = cpu_seconds(model.pid) - model_before, _own_cpu() - bench_before
    failures = []
    for s in finals:
        if s.get("state") != "COMPLETED":
            failures.append(f"{s['id']} {s.get('state')}")
        elif missing := missing_edits(session_patch(s)):
            failures.append(f"{s['id']} lacks {missing}")
    answers = read_answers(model.turns, tags)
    splits = [
        split(answers=answers[tag], sent=sent, completed=end, latency=model.latency)
        for tag, end in zip(tags, ended, strict=True)
    ]
    return BatchResult(
        turns=[s for s in splits if s is not None],
        count=count,
        wall=wall,
        creates=seen.creates,
        cpu=quiet.cpu - before.cpu - idle,
        own_cpu=quiet.busiest_since(before)[1] - idle,
        model_cpu=model_cpu,
        bench_cpu=bench_cpu,
        cpu_during=cpu_during,
        peak_memory=sampler.peak_memory,
        peak_rss=sampler.peak_rss,
        peak_processes=sampler.peak_processes,
        failures=failures,
        latencies=seen.latencies,
        poll_errors=seen.errors,
        refusals=seen.refusals,
    )
