"""What ``bench/web.py`` needs around the web app: a LiveServer whose event loop the
benchmark can write through, realistic session content, signing in, the Chromium lookup,
and two helpers run as processes of their own (``SseReader``, ``OtherWriter``):

    python bench/web_support.py sse URL API_KEY
        prints ``ready`` once the stream's headers arrived, then ``<time.time()> <id>``
        per activity event as its data arrives (the API's baseline for the browser)
    python bench/web_support.py write DATABASE_URL SESSION_ID [--bash-artifacts]
        prints ``ready``, then for each number N read from stdin commits
        ``live_activity(N)`` and prints ``<id> <time.time() right after the commit>``
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp

from _postgres import BenchError
from openjules._types import (
    AgentMessaged,
    Artifact,
    BashOutput,
    ChangeSet,
    CreateSessionRequest,
    GitHubRepoContextInput,
    GitPatch,
    Originator,
    ProgressUpdated,
    PullRequest,
    SessionCompleted,
    SessionFailed,
    SessionOutput,
    SourceContextInput,
    UserMessaged,
)
from openjules.api.state import AppState
from openjules.settings import Settings
from openjules.store import activities as activity_store
from openjules.store import plans, sources, transitions, users
from openjules.store import sessions as session_store
from openjules.store.activities import NewActivity
from openjules.store.changes import Change, Everything
from openjules.store.database import Database
from openjules.store.plans import StepDraft
from openjules.store.query import Filter
from openjules.store.sources import SourceRecord
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter
from openjules.testing import LiveServer

T = TypeVar("T")
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Commands with bashOutput artifacts as well as their text (bench/web.py --bash-artifacts);
# off by default, as settings.bash_output_artifacts is.
BASH_ARTIFACTS = False
SOURCE = SourceRecord(
    owner="acme",
    repo="widgets",
    url="https://git.example.invalid/acme/widgets.git",
    is_private=False,
    default_branch="main",
    branches=["main", "develop", "release/2.x"],
)


# --- the server ----------------------------------------------------------------------------


class BenchServer(LiveServer):
    """A LiveServer whose event loop and database the benchmark reaches: ``call(fn)`` runs
    ``fn(db)`` on the server's own loop with the server's own Database, as the engine's
    workers in an ``openjules serve`` process write (their commits are published to the
    process's streams at once)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app: Any = None

    def _app(self, port: int) -> contextlib.AbstractAsyncContextManager[ASGIApp]:
        return self._captured(port)

    @contextlib.asynccontextmanager
    async def _captured(self, port: int) -> AsyncIterator[ASGIApp]:
        async with super()._app(port) as app:
            self.loop = asyncio.get_running_loop()
            self.app = app  # its state (AppState) is set once its lifespan has started
            yield app

    def call(self, fn: Callable[[Database], Awaitable[T]], *, timeout: float = 300) -> T:
        assert self.loop is not None
        state: AppState = self.app.state.openjules

        async def run() -> T:
            return await fn(state.db)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)


def sign_in(base_url: str, api_key: str) -> str:
    """The ``openjules_session`` cookie, got through the sign-in form as a person would."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        form = client.get("/sign-in")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        if form.status_code != 200 or found is None:
            raise BenchError(f"GET /sign-in: {form.status_code}")
        answer = client.post(
            "/sign-in", data={"csrf_token": found.group(1), "api_key": api_key, "next": "/"}
        )
        cookie = client.cookies.get("openjules_session")
        if answer.status_code != 303 or not cookie:
            raise BenchError(f"POST /sign-in: {answer.status_code} {answer.text[:200]}")
        return cookie


# --- content ----------------------------------------------------------------------------------

FILES = [
    "src/widgets/parser.py",
    "src/widgets/cli.py",
    "src/widgets/config.py",
    "tests/test_parser.py",
    "tests/test_cli.py",
    "docs/usage.md",
    "src/widgets/render.py",
    "CHANGELOG.md",
]
COMMANDS = [
    "python -m pytest -q tests/test_parser.py",
    "python -m pytest -x -q",
    "git diff --stat",
    "grep -rn 'parse_config' src tests",
    "ruff check src tests",
    "ls -la src/widgets",
    "python -m mypy src",
    "cat src/widgets/parser.py",
]
WORDS = [
    *("parser", "config", "value", "token", "line", "empty", "input", "list", "edge"),
    *("case", "default", "option", "path", "error", "message", "handle", "return"),
    *("skip", "log", "widget", "render", "test", "fixture", "branch", "module"),
]


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def command_output(rng: random.Random, command: str, size: int) -> str:
    """About ``size`` characters of what ``command`` would print."""
    lines: list[str] = []
    n = 0
    while sum(len(x) + 1 for x in lines) < size:
        n += 1
        if "pytest" in command:
            name = rng.choice(FILES[3:5])
            result = rng.choice(["PASSED", "PASSED", "PASSED", "FAILED", "SKIPPED"])
            lines.append(f"{name}::test_{rng.choice(WORDS)}_{n} {result} [{min(99, n)}%]")
        elif command.startswith("grep"):
            lines.append(
                f"{rng.choice(FILES)}:{rng.randint(1, 400)}:    value = parse_config("
                f"{rng.choice(WORDS)}, default={rng.choice(WORDS)!r})"
            )
        elif command.startswith(("cat", "git diff")):
            lines.append(f"    {rng.choice(WORDS)} = {rng.choice(WORDS)}({rng.choice(WORDS)})")
        else:
            lines.append(
                f"{rng.choice(FILES)}:{rng.randint(1, 400)}:{rng.randint(1, 80)}: "
                f"{_sentence(rng, 8)}"
            )
    return "\n".join(lines) + "\n"


def patch_of(files: int, rng: random.Random) -> str:
    """A unified diff touching the first ``files`` of FILES (each a few hunks)."""
    out: list[str] = []
    for path in FILES[:files]:
        out += [
            f"diff --git a/{path} b/{path}",
            "index 3b18e51..a8c1f0d 100644",
            f"--- a/{path}",
            f"+++ b/{path}",
        ]
        start = 10
        for _ in range(3):
            removed, added = rng.randint(1, 6), rng.randint(2, 12)
            name = rng.choice(WORDS)
            out.append(f"@@ -{start},{removed + 6} +{start},{added + 6} @@ def {name}():")
            out += [f"     {rng.choice(WORDS)} = {rng.choice(WORDS)}" for _ in range(3)]
            out += [f"-    {rng.choice(WORDS)} = old_{rng.choice(WORDS)}()" for _ in range(removed)]
            out += [f"+    {rng.choice(WORDS)} = new_{rng.choice(WORDS)}()" for _ in range(added)]
            out += [f"     return {rng.choice(WORDS)}" for _ in range(3)]
            start += 40
    return "\n".join(out) + "\n"


def bash_activity(rng: random.Random, size: int) -> NewActivity:
    """A command as the engine records it: Jules' text in the description; with
    ``BASH_ARTIFACTS`` (settings.bash_output_artifacts) also a bashOutput artifact."""
    command = rng.choice(COMMANDS)
    output = command_output(rng, command, size)
    code = rng.choice([0, 0, 0, 1])
    bash = BashOutput(command=command, output=output, exit_code=code)
    return NewActivity(
        kind=ProgressUpdated(
            title="Ran bash command",
            description=f"Command: \n{command}\nOutput: {output}Exit Code: {code}",
        ),
        originator=Originator.AGENT,
        artifacts=[Artifact(bash_output=bash)] if BASH_ARTIFACTS else [],
    )


def agent_message(rng: random.Random) -> NewActivity:
    text = " ".join(_sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(1, 4)))
    return NewActivity(kind=AgentMessaged(agent_message=text), originator=Originator.AGENT)


def progress(rng: random.Random) -> NewActivity:
    return NewActivity(
        kind=ProgressUpdated(title=_sentence(rng, 5), description=_sentence(rng, 14)),
        originator=Originator.AGENT,
    )


def live_activity(rng: random.Random, n: int) -> NewActivity:
    """One of the activities a running session writes, in the usual mix."""
    pick = n % 5
    if pick in (0, 2):
        return bash_activity(rng, rng.randint(1000, 4000))
    if pick == 1:
        return progress(rng)
    return agent_message(rng)


def change_set(patch: str, message: str = "") -> ChangeSet:
    return ChangeSet(
        source="sources/github/acme/widgets",
        git_patch=GitPatch(
            unidiff_patch=patch, base_commit_id="3b18e51a8c1f0d", suggested_commit_message=message
        ),
    )


# --- seeding ----------------------------------------------------------------------------------


async def seed_user(db: Database) -> tuple[str, int]:
    """A user (and the repository its sessions use): its API key and id."""
    async with db.write() as conn:
        await sources.upsert(conn, record=SOURCE)
        user = await users.get_or_create_user(conn, name=f"bench-{secrets.token_hex(4)}")
        key = await users.create_key(conn, user=user, max_live_keys=3)
    return key.secret, user.id


def _request(rng: random.Random, n: int) -> CreateSessionRequest:
    prompt = f"Task {n}: {_sentence(rng, rng.randint(6, 14))} Also {_sentence(rng, 10).lower()}"
    branch = rng.choice(SOURCE.branches)
    return CreateSessionRequest(
        prompt=prompt,
        source_context=SourceContextInput(
            source="sources/github/acme/widgets",
            github_repo_context=GitHubRepoContextInput(starting_branch=branch),
        ),
    )


async def seed_sessions(db: Database, owner_id: int, count: int, *, batch: int = 100) -> None:
    """``count`` sessions in the usual spread of states: a quarter each queued, in
    progress, completed with a pull request, failed."""
    rng = random.Random(7)
    for first in range(0, count, batch):
        async with db.write() as conn:
            for n in range(first, min(first + batch, count)):
                record = await session_store.create(
                    conn, owner_id=owner_id, request=_request(rng, n)
                )
                kind = n % 4
                if kind == 0:
                    continue
                await transitions.apply(
                    ConnectionWriter(conn), session_id=record.id, event=Event.START_WORK
                )
                if kind == 2:
                    patch = patch_of(2, rng)
                    pr = PullRequest(
                        url=f"https://github.example.invalid/acme/widgets/pull/{n}",
                        title=f"Task {n}",
                        base_ref="main",
                        head_ref=f"jules/{n}",
                    )
                    await transitions.apply(
                        ConnectionWriter(conn),
                        session_id=record.id,
                        event=Event.COMPLETED,
                        new_activities=[
                            NewActivity(kind=SessionCompleted(), originator=Originator.AGENT)
                        ],
                        outputs=[
                            SessionOutput(pull_request=pr),
                            SessionOutput(change_set=change_set(patch)),
                        ],
                    )
                elif kind == 3:
                    await transitions.apply(
                        ConnectionWriter(conn),
                        session_id=record.id,
                        event=Event.FAILED,
                        new_activities=[
                            NewActivity(
                                kind=SessionFailed(reason="Tests failed."),
                                originator=Originator.AGENT,
                            )
                        ],
                    )


async def _plan(conn: AsyncConnection, session_id: str, rng: random.Random, steps: int) -> None:
    await transitions.apply(
        ConnectionWriter(conn), session_id=session_id, event=Event.START_PLANNING
    )
    await plans.propose(
        ConnectionWriter(conn),
        session_id=session_id,
        steps=[
            StepDraft(title=_sentence(rng, 5), description=_sentence(rng, 16)) for _ in range(steps)
        ],
        require_approval=False,
    )


async def seed_long_session(db: Database, owner_id: int, activities: int) -> str:
    """A completed session of exactly ``activities`` activities, as an agent leaves one:
    a plan, then per step commands (with a few KB of output each), progress updates and
    messages, a changeSet when each step completes, and the final changeSet."""
    rng = random.Random(11)
    steps = 8
    async with db.write() as conn:
        record = await session_store.create(conn, owner_id=owner_id, request=_request(rng, 0))
        session_id = record.id
        await _plan(conn, session_id, rng, steps)
    async with db.read() as conn:
        written, _ = await activity_store.list_page(
            conn, session_id=session_id, flt=Filter(), page_size=100, after_ns=None
        )
    left = activities - len(written) - 1  # the completion last
    per_step = [left // steps + (1 if i < left % steps else 0) for i in range(steps)]
    for step, count in enumerate(per_step):
        for n in range(count - 1):
            roll = rng.random()
            if roll < 0.6:
                activity = bash_activity(rng, rng.randint(1000, 5000))
                event = Event.PROGRESS
            elif roll < 0.8:
                activity, event = progress(rng), Event.PROGRESS
            elif roll < 0.97 or n == 0:
                activity, event = agent_message(rng), Event.AGENT_MESSAGED
            else:
                activity = NewActivity(
                    kind=UserMessaged(user_message=_sentence(rng, 12)), originator=Originator.USER
                )
                event = Event.USER_MESSAGED
            async with db.write() as conn:
                await transitions.apply(
                    ConnectionWriter(conn),
                    session_id=session_id,
                    event=event,
                    new_activities=[activity],
                )
        done = NewActivity(
            kind=ProgressUpdated(
                title=f"Completed step {step + 1}", description=_sentence(rng, 12)
            ),
            originator=Originator.AGENT,
            artifacts=[Artifact(change_set=change_set(patch_of(step + 1, random.Random(step))))],
        )
        async with db.write() as conn:
            await transitions.apply(
                ConnectionWriter(conn),
                session_id=session_id,
                event=Event.PROGRESS,
                new_activities=[done],
            )
    final = change_set(patch_of(steps, random.Random(steps - 1)), "Handle empty input lists")
    pr = PullRequest(url="https://github.example.invalid/acme/widgets/pull/1", title="Task 0")
    async with db.write() as conn:
        await transitions.apply(
            ConnectionWriter(conn),
            session_id=session_id,
            event=Event.COMPLETED,
            new_activities=[
                NewActivity(
                    kind=SessionCompleted(),
                    originator=Originator.AGENT,
                    description=_sentence(rng, 20),
                    artifacts=[Artifact(change_set=final)],
                )
            ],
            outputs=[SessionOutput(pull_request=pr), SessionOutput(change_set=final)],
        )
    return session_id


async def seed_running_session(db: Database, owner_id: int) -> str:
    """A session in progress: a plan and a first command, nothing more yet."""
    rng = random.Random(13)
    async with db.write() as conn:
        record = await session_store.create(conn, owner_id=owner_id, request=_request(rng, 1))
        await _plan(conn, record.id, rng, 5)
        await transitions.apply(
            ConnectionWriter(conn),
            session_id=record.id,
            event=Event.PROGRESS,
            new_activities=[bash_activity(rng, 2000)],
        )
    return record.id


async def append_one(db: Database, session_id: str, activity: NewActivity) -> tuple[str, float]:
    """Commit one activity; its id and time.time() right after the commit: taken where
    ``db`` publishes the transaction's changes to its process's listeners, at once after
    the commit and before anything else runs (the stream hub's listener only schedules)."""
    event = Event.AGENT_MESSAGED if activity.kind.__class__ is AgentMessaged else Event.PROGRESS
    committed: list[float] = []

    def heard(change: Change | Everything) -> None:
        if isinstance(change, Change) and change.session_id == session_id and not committed:
            committed.append(time.time())

    unsubscribe = db.changes.subscribe(heard)
    try:
        async with db.write() as conn:
            result = await transitions.apply(
                ConnectionWriter(conn),
                session_id=session_id,
                event=event,
                new_activities=[activity],
            )
    finally:
        unsubscribe()
    if not committed:
        raise BenchError("the commit was not published")
    return result.activities[0].id, committed[0]


# --- processes of their own: the API's stream read, activities written -------------------


class Child:
    """``python web_support.py ARGS...`` as a child process speaking in lines."""

    def __init__(self, *args: str, stdin: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.readline()
        if line != "ready":
            self.finish()
            raise BenchError(f"{args[0]}: the child did not start: {line!r}")

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def finish(self) -> str:
        """Stop it (SIGTERM to this child only); what it printed since."""
        if self.process.poll() is None:
            self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        return out or ""


class SseReader(Child):
    """The API's ``alt=sse`` stream of activities, read with httpx in a process of its own,
    so that neither the server's thread nor Playwright holds the GIL it needs."""

    def __init__(self, url: str, api_key: str) -> None:
        super().__init__("sse", url, api_key)

    def stop(self) -> dict[str, float]:
        """activity id -> time.time() its event's data arrived."""
        arrivals: dict[str, float] = {}
        for line in self.finish().splitlines():
            when, _, activity_id = line.partition(" ")
            arrivals.setdefault(activity_id, float(when))
        return arrivals


class OtherWriter(Child):
    """Activities committed by a process of its own, as an ``openjules worker`` commits
    them: the server hears of them by LISTEN/NOTIFY (PostgreSQL) or its change poll
    (SQLite)."""

    def __init__(self, database_url: str, session_id: str) -> None:
        if not database_url.startswith("sqlite"):
            sep = "&" if "?" in database_url else "?"
            database_url += f"{sep}application_name=openjules-bench-writer"
        flag = ["--bash-artifacts"] if BASH_ARTIFACTS else []
        super().__init__("write", database_url, session_id, *flag, stdin=True)

    def append(self, n: int) -> tuple[str, float]:
        """Commit ``live_activity(n)``; its id and time.time() right after the commit."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{n}\n")
        self.process.stdin.flush()
        activity_id, _, when = self.readline().partition(" ")
        if not when:
            raise BenchError(f"the writer failed: {activity_id!r}")
        return activity_id, float(when)

    def stop(self) -> None:
        """End of input: the child disposes of its database and exits."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.finish()


def _read_sse(url: str, api_key: str) -> None:
    headers = {"X-Goog-Api-Key": api_key, "Accept": "text/event-stream"}
    timeout = httpx.Timeout(10, read=None)
    with httpx.Client(timeout=timeout) as client, client.stream("GET", url, headers=headers) as r:
        if r.status_code != 200:
            print(f"HTTP {r.status_code}", flush=True)
            return
        print("ready", flush=True)
        event = ""
        for line in r.iter_lines():
            now = time.time()
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "activity":
                body: dict[str, Any] = json.loads(line[6:])
                print(f"{now:.6f} {body['id']}", flush=True)


async def _write(database_url: str, session_id: str) -> None:
    db = Database(database_url)
    rng = random.Random(19)
    try:
        print("ready", flush=True)
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            activity_id, at = await append_one(db, session_id, live_activity(rng, int(line)))
            print(f"{activity_id} {at:.6f}", flush=True)
    finally:
        await db.dispose()


def main(argv: list[str]) -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        if len(argv) == 3 and argv[0] == "sse":
            _read_sse(argv[1], argv[2])
        elif len(argv) in (3, 4) and argv[0] == "write":
            global BASH_ARTIFACTS
            BASH_ARTIFACTS = argv[3:] == ["--bash-artifacts"]
            asyncio.run(_write(argv[1], argv[2]))
        else:
            print(__doc__)
            sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
