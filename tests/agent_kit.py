"""A kit for tests whose sessions really run: the agent at work with the fake model in the
real sandbox, on a live server with workers (the module fixtures ``scripts``, ``model`` and
``agent`` are in ``tests.agent_fixtures``).

- ``Scripts``: the fake model's answers by session: ``scripts.add(prompt, steps)`` (or
  ``scripts.prompt(text, steps)``, which tags ``text`` so it can start several sessions);
  turn N of the session gets step N, the same again after a pause (see the class).
  ``call(name, **arguments)``, the reply calling one tool, is tests/engine/worker_support's.
- ``agent_settings(base, data_dir=..., model=..., **overrides)``: the ``agent`` server's.
- ``new_key(live, name)``: a new user's API key; ``revoke_key(settings, key)``: what
  ``openjules keys revoke`` does; ``local_source(live, repo, name)``: a local repository
  registered as acme/NAME; ``start(client, prompt, ...)``: a session created through the API.
- ``held(command)`` / ``release(live, session_id)``: a shell command that waits in the
  sandbox until the test lets it go (so what follows it happens after, say, a page loaded).
- ``wait_until(predicate, what=...)``; a session's state is waited for with
  ``tests.support.wait_for_state``.
- ``off_loop(fn, ...)``: ``fn`` in a worker thread, for helpers that call ``asyncio.run``
  from a thread where an event loop is marked running (Playwright's sync API, async tests).

Everything here is sync and safe to call from any thread.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.settings import Settings
from openjules.store import users
from openjules.store.oneshot import run_write
from openjules.testing import FakeModel, Fault, LiveServer, Reply, provision_user, register_source
from tests.engine.worker_support import turn_of

# What a step of a script may be: a reply, or a reply chosen by how often this turn of this
# prompt was asked (1 the first time).
ScriptStep = Reply | Callable[[int], Reply]
UNSCRIPTED = '{"error": {"message": "no script for this prompt", "code": 400}}'
TAG_LINE = "Tracking: "
# ``held``: the command touches HOLD in the work tree, then waits (up to 60 s) for GO.
HOLD, GO = ".flow-hold", ".flow-go"
HOLD_S = 60

P = ParamSpec("P")
T = TypeVar("T")


class Scripts:
    """Each session's model, by its prompt (its first user message): ``add(prompt, [step,
    ...])``; turn N gets step N (the last step repeats), so a step replayed after a pause
    gets the same answer. A prompt without a script gets a 400 (the session fails)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[ScriptStep]] = {}
        self._asked: Counter[tuple[str, int]] = Counter()

    def add(self, prompt: str, steps: Sequence[ScriptStep]) -> str:
        with self._lock:
            assert prompt not in self._scripts, f"{prompt!r} already has a script"
            self._scripts[prompt] = list(steps)
        return prompt

    def prompt(self, text: str, steps: Sequence[ScriptStep]) -> str:
        """``add`` for ``text`` followed by a line with a fresh tag: the same text may start
        several sessions, and their titles (the first line) stay ``text``."""
        return self.add(f"{text}\n\n{TAG_LINE}flow-{secrets.token_hex(4)}", steps)

    def asked(self, prompt: str, turn: int) -> int:
        """How many times turn ``turn`` of ``prompt``'s session was asked for."""
        with self._lock:
            return self._asked[(prompt, turn)]

    def __call__(self, request: dict[str, Any]) -> Reply | Fault:
        prompt = str(request["messages"][1]["content"])
        turn = turn_of(request)
        with self._lock:
            self._asked[(prompt, turn)] += 1
            times = self._asked[(prompt, turn)]
            script = self._scripts.get(prompt)
        if not script:
            return Fault(400, body=UNSCRIPTED)
        step = script[min(turn, len(script) - 1)]
        return step if isinstance(step, Reply) else step(times)


def agent_settings(
    base: Settings, *, data_dir: Path, model: FakeModel, **overrides: Any
) -> Settings:
    """``base`` whose two workers run the agent on ``model`` (no retries: each turn is asked
    once unless a pause replays it), with ``overrides``."""
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "workers": 2,
            "model_base_url": model.base_url,
            "model_api_key": "sk-fake",
            "model": "fake-model",
            "model_max_retries": 0,
            "model_timeout_seconds": 10.0,
            "sse_keepalive_seconds": 1.0,
            **overrides,
        }
    )


def new_key(live: LiveServer, name: str = "user") -> str:
    """A new user ``NAME-<random>`` with one API key."""
    return off_loop(provision_user, live.settings, name=f"{name}-{secrets.token_hex(4)}")


def key_id(secret: str) -> str:
    """The id in an API key ``ojk_<id>_<secret>``."""
    return secret.split("_")[1]


def revoke_key(settings: Settings, secret: str) -> None:
    """Revoke the API key ``secret`` in the store (what ``openjules keys revoke`` does)."""

    async def action(conn: AsyncConnection) -> None:
        await users.revoke_key(conn, key_id=key_id(secret))

    run_write(settings.resolved_database_url(), action)


def local_source(live: LiveServer, repo: Path, name: str) -> str:
    """The repository at ``repo`` registered on ``live`` as acme/``name``."""
    return off_loop(register_source, live.settings, location=str(repo), owner="acme", repo=name)


def start(
    client: httpx.Client,
    prompt: str,
    *,
    source: str | None = None,
    branch: str | None = None,
    title: str | None = None,
    require_plan_approval: bool = False,
) -> str:
    """A new session through the API; returns its id."""
    body: dict[str, Any] = {"prompt": prompt, "requirePlanApproval": require_plan_approval}
    if source:
        context: dict[str, Any] = {"source": source}
        if branch:
            context["githubRepoContext"] = {"startingBranch": branch}
        body["sourceContext"] = context
    if title:
        body["title"] = title
    response = client.post("/sessions", json=body)
    assert response.status_code == 200, response.text
    sid: str = response.json()["id"]
    return sid


def held(command: str) -> str:
    """``command``, run once the test calls ``release`` for the session."""
    polls = int(HOLD_S / 0.05)
    return (
        f"touch {HOLD}; i=0; while [ ! -e {GO} ] && [ $i -lt {polls} ]; do sleep 0.05; "
        f"i=$((i+1)); done; rm -f {HOLD} {GO}; {command}"
    )


def release(live: LiveServer, session_id: str) -> None:
    """Let the session's ``held`` command go on (waiting until it is holding)."""
    tree = live.settings.data_dir / "workspaces" / session_id / "tree"
    wait_until(
        lambda: (tree / HOLD).exists(),
        seconds=HOLD_S,
        what=f"a held command in session {session_id}",
    )
    (tree / GO).touch()


def wait_until(predicate: Callable[[], object], *, seconds: float = 30, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.02)


def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread: for helpers that call ``asyncio.run``,
    which a loop marked running in the calling thread (Playwright's sync API) refuses."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="off-loop") as pool:
        return pool.submit(fn, *args, **kwargs).result()
