"""Part 2 of bench/concurrency.py: what sessions waiting for a person cost. A server on a
database of ``count`` sessions AWAITING_PLAN_APPROVAL (bench/_idle.py seeds them) against
one on an empty database, started the same way and measured the same way."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from _idle import jobs_by_state, seed_waiting
from _procfs import MB, TreeSample, mb, sample
from _scripted import verdict
from _servers import SOURCE_NAME, Databases, idle_reads, start_server
from openjules.testing import provision_user

AIM_IDLE_RSS = 50 * MB


@dataclass(frozen=True)
class IdleServer:
    settled: TreeSample  # after the settle time
    read: TreeSample  # after the reads and a second more
    idle_cpu: float  # cores, during the settle time
    jobs: dict[str, int]
    reads: str


def idle_server(
    *, dbs: Databases, source: Path, tmp: Path, sandbox: str, settle: float, count: int
) -> IdleServer:
    """A server on a fresh database holding ``count`` waiting sessions (none: empty)."""
    url = dbs.new(source)
    settings = dbs.settings(url, dbs.made)
    user = f"bench-{secrets.token_hex(4)}"
    key = provision_user(settings, name=user)
    if count:
        began = time.perf_counter()
        seed_waiting(url, user_name=user, source=SOURCE_NAME, count=count)
        print(
            f"Seeded {count:,} sessions AWAITING_PLAN_APPROVAL in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,
        )
    log = tmp / f"server-idle-{dbs.made}.log"
    # The model is never called: nothing is to run.
    with start_server(
        settings=settings, model_url="http://127.0.0.1:9/v1", sandbox=sandbox, log=log
    ) as server:
        started = sample(server.pid)
        time.sleep(settle)
        settled = sample(server.pid)
        reads = idle_reads(server, key=key)
        time.sleep(1.0)
        read = sample(server.pid)
        idle_cpu = (settled.cpu - started.cpu) / settle if settle else 0.0
        return IdleServer(settled, read, idle_cpu, jobs_by_state(url), reads)


def waiting_sessions(
    *, dbs: Databases, source: Path, tmp: Path, sandbox: str, settle: float, count: int
) -> bool:
    """Measure both servers, print the comparison; whether every target was met."""
    empty, waiting = (
        idle_server(dbs=dbs, source=source, tmp=tmp, sandbox=sandbox, settle=settle, count=n)
        for n in (0, count)
    )
    print()
    print(
        f"{'server':<26} {'RSS settled':>11} {'after reads':>11} {'memory':>9} {'processes':>9} "
        f"{'jobs leased':>11} {'ready':>5} {'done':>6} {'idle CPU':>8}"
    )
    for title, m in (("empty database", empty), (f"{count:,} waiting sessions", waiting)):
        print(
            f"{title:<26} {mb(m.settled.rss):>11} {mb(m.read.rss):>11} {mb(m.read.memory):>9} "
            f"{m.read.processes:>9} "
            f"{m.jobs['leased']:>11} {m.jobs['ready']:>5} {m.jobs['done']:>6} {m.idle_cpu:>8.1%}"
        )
    print(
        f"(reads: {waiting.reads}; RSS of the server process {settle:g} s after the "
        "start, and after the reads and 1 s more; memory: PSS of it and the processes under "
        "it, after the reads; idle CPU: of one core, while settling)"
    )
    difference = waiting.read.rss - empty.read.rss
    tree_difference = waiting.read.memory - empty.read.memory
    ok_jobs = waiting.jobs["leased"] == 0 and waiting.jobs["ready"] == 0
    # HTTP worker processes, if any, are under both servers; a sandbox only under one.
    ok_procs = waiting.read.processes <= empty.read.processes
    ok_rss = difference <= AIM_IDLE_RSS and tree_difference <= AIM_IDLE_RSS
    print(
        f"{verdict(ok_jobs)}: {count:,} waiting sessions: {waiting.jobs['leased']} jobs "
        f"leased, {waiting.jobs['ready']} ready"
    )
    print(
        f"{verdict(ok_procs)}: {waiting.read.processes} processes under the server "
        f"({empty.read.processes} under the empty one)"
    )
    print(
        f"{verdict(ok_rss)}: RSS {mb(waiting.read.rss)} vs {mb(empty.read.rss)} empty: "
        f"{difference / MB:+,.1f} MB; with its processes (PSS) {tree_difference / MB:+,.1f} MB "
        f"(aim within {AIM_IDLE_RSS // MB} MB)"
    )
    return ok_jobs and ok_procs and ok_rss
