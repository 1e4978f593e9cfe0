"""Helpers for browser tests whose sessions really run: a live server with workers, the
fake model, the real sandbox and a fake GitHub, and a signed-in page.

- ``sign_in(page, server_url, key)``: signs ``page`` in through the sign-in form.
- ``tool(name, **arguments)``: one fake-model reply calling one tool.
- ``ModelScripts``: one script per session on a shared ``FakeModel``: ``scripts.prompt(text,
  *steps)`` returns a prompt carrying a tag; each model request goes to the steps of the tag
  its session's prompt carries (sessions of one server may run side by side).
- ``agent_env(settings, workdir)``: a context manager yielding an ``AgentEnv`` (server,
  model, scripts, GitHub, sources); ``env.new_key()`` makes a user, ``env.api(key)`` a client.
- ``held(command)`` / ``env.release(session_id)``: a shell command that waits in the
  sandbox until the test lets it go (so what follows it happens after, say, a page loaded).
- ``session_id_of(page)``, ``wait_for_state(env, key, sid, states)``.

Everything here is sync and safe while Playwright's sync API is up: helpers that run their
own event loop go through ``off_loop``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from openjules.settings import Settings
from openjules.testing import (
    FakeGitHub,
    FakeModel,
    LiveServer,
    Reply,
    ToolCall,
    provision_user,
    register_github_source,
    register_source,
)
from openjules.testing.fake_model import Fault, Step
from tests import support
from tests.web.browser_support import off_loop

GITHUB_TOKEN = "ghp_flow" + secrets.token_hex(12)
# The greeter repository every agent test edits (branch main, plus develop).
GREETER_FILES = {
    "app.py": "print('hello')\n",
    "AGENTS.md": "Always greet politely.\n",
    "README.md": "# greeter\n\nPrints a greeting.\n",
}
TAG_LINE = "Tracking: "
# ``held``: the command touches HOLD in the work tree, then waits (up to 60 s) for GO.
HOLD, GO = ".flow-hold", ".flow-go"
HOLD_S = 60
_TAG = re.compile(re.escape(TAG_LINE) + r"(flow-[0-9a-f]+)")


def sign_in(page: Page, server_url: str, key: str) -> None:
    """Sign ``page`` in with ``key`` (the form at /sign-in); it ends on the sessions page."""
    page.goto(f"{server_url}/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server_url}/")


def held(command: str) -> str:
    """``command``, run once the test calls ``AgentEnv.release`` for the session."""
    polls = int(HOLD_S / 0.05)
    return (
        f"touch {HOLD}; i=0; while [ ! -e {GO} ] && [ $i -lt {polls} ]; do sleep 0.05; "
        f"i=$((i+1)); done; rm -f {HOLD} {GO}; {command}"
    )


def tool(name: str, **arguments: Any) -> Reply:
    """The model's reply calling tool ``name`` with ``arguments``."""
    return Reply(tool_calls=[ToolCall(name, arguments)])


class ModelScripts:
    """Routes each request of ``model`` to the script of the session it is for, found by
    the tag in the session's prompt (its first user message). A request whose session has
    no script, or whose script is used up, gets a 400: the session fails, saying so."""

    def __init__(self, model: FakeModel) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Step]] = {}
        model.respond_with(self._respond)

    def prompt(self, text: str, *steps: Step) -> str:
        """A prompt for a new session: ``text``, then a line with a fresh tag whose script
        is ``steps`` (more can be added with ``add``)."""
        tag = f"flow-{secrets.token_hex(4)}"
        with self._lock:
            self._scripts[tag] = deque(steps)
        return f"{text}\n\n{TAG_LINE}{tag}"

    def add(self, prompt: str, *steps: Step) -> None:
        """Append ``steps`` to the script of ``prompt`` (as ``prompt()`` returned it)."""
        with self._lock:
            self._scripts[self._tag_of(prompt)].extend(steps)

    def remaining(self, prompt: str) -> int:
        with self._lock:
            return len(self._scripts[self._tag_of(prompt)])

    @staticmethod
    def _tag_of(text: str) -> str:
        found = _TAG.search(text)
        assert found, f"no {TAG_LINE!r} line in the prompt"
        return found.group(1)

    def _respond(self, body: dict[str, Any]) -> Step:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        first = users[0].get("content") if users else None
        found = _TAG.search(first) if isinstance(first, str) else None
        with self._lock:
            script = self._scripts.get(found.group(1)) if found else None
            if script:
                return script.popleft()
        return Fault(400, body='{"error": {"message": "no scripted reply for this session"}}')


@dataclass
class AgentEnv:
    server: LiveServer
    model: FakeModel
    scripts: ModelScripts
    github: FakeGitHub
    repo: Path
    source: str  # the greeter repository as a local git source
    github_source: str  # the same repository on the fake GitHub (acme/greeter)
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def new_key(self, name: str = "") -> str:
        """A new user with one API key."""
        user = name or f"user-{secrets.token_hex(4)}"
        return off_loop(provision_user, self.server.settings, name=user)

    def release(self, session_id: str) -> None:
        """Let the session's ``held`` command go on (waiting until it is holding)."""
        tree = self.server.settings.data_dir / "workspaces" / session_id / "tree"
        deadline = time.monotonic() + HOLD_S
        while not (tree / HOLD).exists():
            assert time.monotonic() < deadline, f"no held command in session {session_id}"
            time.sleep(0.02)
        (tree / GO).touch()

    def api(self, key: str) -> httpx.Client:
        """An API client with ``key`` (one per key, closed with the environment)."""
        if key not in self._clients:
            self._clients[key] = support.api_client(self.server.api, key)
        return self._clients[key]


def agent_settings(
    base: Settings, *, data_dir: Path, model: FakeModel, github: FakeGitHub, workers: int = 3
) -> Settings:
    """``base`` with workers, the fake model, bashOutput artifacts and the fake GitHub."""
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "workers": workers,
            "model_base_url": model.base_url,
            "model_api_key": "sk-fake",
            "model": "fake-model",
            "model_max_retries": 0,
            "model_timeout_seconds": 10.0,
            "bash_output_artifacts": True,
            "github_api_url": github.api_url,
            "github_token": GITHUB_TOKEN,
        }
    )


@contextmanager
def agent_env(base: Settings, workdir: Path, *, workers: int = 3) -> Iterator[AgentEnv]:
    """A live server (``base``'s database) whose sessions run with the fake model in the real
    sandbox, on the greeter repository, registered both as a local source and on the fake
    GitHub (pull requests go there)."""
    repo = support.make_repo(workdir / "greeter", GREETER_FILES, branches=("develop",))
    with FakeModel() as model, FakeGitHub(workdir / "github", token=GITHUB_TOKEN) as github:
        github.add_repo("acme", "greeter", from_path=repo)
        scripts = ModelScripts(model)
        settings = agent_settings(
            base, data_dir=workdir / "data", model=model, github=github, workers=workers
        )
        with LiveServer(settings) as server:
            source = off_loop(
                register_source,
                server.settings,
                location=str(repo),
                owner="acme",
                repo="greeter-local",
            )
            github_source = off_loop(
                register_github_source, server.settings, owner="acme", repo="greeter"
            )
            env = AgentEnv(server, model, scripts, github, repo, source, github_source)
            try:
                yield env
            finally:
                for client in env._clients.values():
                    client.close()


def session_id_of(page: Page) -> str:
    """The id of the session whose page ``page`` shows."""
    found = re.search(r"/session/([0-9]+)", page.url)
    assert found, f"not a session page: {page.url}"
    return found.group(1)


def wait_for_state(
    env: AgentEnv, key: str, session_id: str, states: Collection[str], timeout: float = 60
) -> dict[str, Any]:
    """Poll the API until the session is in one of ``states``; returns the session."""
    return support.wait_for_state(env.api(key), session_id, states, timeout=timeout)
