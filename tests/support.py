"""Helpers every test may use: plain functions and constants, no fixtures.

- ``api_client``: an HTTP client for the v1alpha API with one user's key;
- ``ok_json``, ``walk``, ``list_activities``, ``kinds``, ``wait_for_state``: reading
  sessions and activities through that client (lists always follow every page);
- ``run_git``, ``git``, ``make_repo``: git isolated from the machine's configuration, and
  real repositories built from a few files and branches;
- ``unused_port``: a loopback port for a server started later, or for nothing to listen on.

Fixtures live in the conftest files; their bodies call these functions.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import subprocess
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

API_KEY_HEADER = "X-Goog-Api-Key"
CLIENT_TIMEOUT_S = 30.0
GIT_TIMEOUT_S = 60.0
MAX_PAGES = 1000

# The seven activity kinds of the Jules API: every activity carries exactly one of them.
ACTIVITY_KINDS = frozenset(
    {
        "agentMessaged",
        "userMessaged",
        "planGenerated",
        "planApproved",
        "progressUpdated",
        "sessionCompleted",
        "sessionFailed",
    }
)
TERMINAL = frozenset({"COMPLETED", "FAILED"})
# The root conftest's ``git_repo`` repository, as the API and compat tests register it.
OWNER = "acme"
REPO = "demo"
SOURCE_NAME = f"sources/github/{OWNER}/{REPO}"
# A well-formed session id that no test creates.
MISSING_SESSION_ID = "1234567890123456789"


# --- HTTP -----------------------------------------------------------------------------


def api_client(base_url: str, key: str, *, timeout: float = CLIENT_TIMEOUT_S) -> httpx.Client:
    """A client for ``base_url`` (e.g. ``http://127.0.0.1:PORT/v1alpha``) sending ``key``."""
    return httpx.Client(base_url=base_url, headers={API_KEY_HEADER: key}, timeout=timeout)


def ok_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 200 response (asserting status and content type)."""
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def walk(
    client: httpx.Client, path: str, key: str, params: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every item of a list method, page by page, until no nextPageToken is returned."""
    items: list[dict[str, Any]] = []
    query = dict(params or {})
    for _ in range(MAX_PAGES):
        page = ok_json(client.get(path, params=query))
        items.extend(page.get(key, []))
        token = page.get("nextPageToken")
        if not token:
            return items
        query["pageToken"] = token
    raise AssertionError(f"pagination of {path} did not end after {MAX_PAGES} pages")


def list_activities(client: httpx.Client, session_id: str, **params: str) -> list[dict[str, Any]]:
    """All activities of a session, oldest first (following every nextPageToken)."""
    return walk(client, f"/sessions/{session_id}/activities", "activities", params)


def kinds(activities: Sequence[Mapping[str, Any]]) -> list[str]:
    """The kind of each activity (``planGenerated``, ...); each must have exactly one."""
    result: list[str] = []
    for activity in activities:
        found = [key for key in activity if key in ACTIVITY_KINDS]
        assert len(found) == 1, f"not exactly one activity kind: {activity}"
        result.append(found[0])
    return result


def wait_for_state(
    client: httpx.Client, session_id: str, states: Collection[str], timeout: float = 60
) -> dict[str, Any]:
    """Poll the session until its state is one of ``states``; return the session."""
    deadline = time.monotonic() + timeout
    while True:
        session = ok_json(client.get(f"/sessions/{session_id}"))
        if session["state"] in states:
            return session
        if time.monotonic() > deadline:
            raise AssertionError(
                f"session {session_id} stayed {session['state']}, wanted one of {sorted(states)}"
            )
        time.sleep(0.05)


# --- git ------------------------------------------------------------------------------


def git_env(home: Path) -> dict[str, str]:
    """An environment in which git reads no user or system configuration, and never
    starts a background ``gc --auto``: after a commit of a few thousand files it may, and
    then packs away the loose objects a server is cloning at that moment."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "gc.auto",
        "GIT_CONFIG_VALUE_0": "0",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.com",
    }


def run_git(
    *args: str, cwd: Path, check: bool = True, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git in ``cwd``, isolated (see :func:`git_env`); ``token`` is sent as Basic auth.

    With ``check`` a failure raises AssertionError carrying git's stderr.
    """
    auth: list[str] = []
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        auth = ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
    done = subprocess.run(
        ["git", *auth, *args],
        cwd=cwd,
        env=git_env(cwd),
        capture_output=True,
        text=True,
        check=False,
        timeout=GIT_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def git(*args: str, cwd: Path) -> str:
    """stdout of a git command that must succeed."""
    return run_git(*args, cwd=cwd).stdout


def make_repo(
    path: Path,
    files: Mapping[str, str] | None = None,
    *,
    branch: str = "main",
    branches: Sequence[str] = (),
    message: str = "initial",
) -> Path:
    """A real repository at ``path``: one commit of ``files`` (relative path -> text;
    default ``README.md``) on ``branch`` (checked out), plus ``branches`` at that commit."""
    path.mkdir(parents=True, exist_ok=True)
    run_git("init", "-q", "-b", branch, cwd=path)
    for name, text in (files if files is not None else {"README.md": f"# {path.name}\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    run_git("add", "--all", cwd=path)
    run_git("commit", "-q", "-m", message, cwd=path)
    for other in branches:
        run_git("branch", other, cwd=path)
    return path


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default).
UNUSED_PORTS_FROM = 10_000


def unused_port() -> int:
    """A loopback port nothing listens on, for a process to bind later (or for nothing to
    listen on). It is picked below the kernel's ephemeral range, whose ports go to every
    ``bind`` to port 0 and every outgoing connection: a port from that range could be
    taken by another test's server or client (another pytest-xdist worker's) before the
    process meant to bind it does, or while a restarted server is down."""
    low = _ephemeral_ports_low()
    for _ in range(100):
        port = random.randrange(UNUSED_PORTS_FROM, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # in use: someone else's
                continue
        return port
    raise RuntimeError(f"no free loopback port in {UNUSED_PORTS_FROM}-{low - 1}")


def _ephemeral_ports_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    except OSError:
        return 32768
    return int(text.split()[0])
