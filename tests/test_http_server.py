"""The HTTP server under abuse (issue 9, finding 2): clients that never finish a request
are disconnected, open connections are capped with a 503 envelope beyond the cap, and a
normal client is served while thousands of descriptors' worth of slow clients try to
starve it. Through the real server: ``LiveServer`` with small limits, and ``openjules
serve`` as a process with few descriptors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer, provision_user
from tests.cli.support import free_port, openjules_executable

# Generous bounds for "the server acted": these are not speed assertions.
ACTED_WITHIN_S = 15.0
SHORT_TIMEOUT_S = 1.0
SMALL_CAP = 20
INVALID_REQUESTS = 50


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=ACTED_WITHIN_S)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes ``sock`` (EOF or reset) before ACTED_WITHIN_S; any
    bytes it sends first are read and ignored."""
    sock.settimeout(ACTED_WITHIN_S)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def still_open(sock: socket.socket) -> bool:
    """True when the server has neither closed nor written to ``sock`` (checked now)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # returns: data or EOF
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False


@pytest.fixture(scope="module")
def quick_timeouts(server_settings: Settings) -> Iterator[LiveServer]:
    settings = server_settings.model_copy(
        update={
            "http_header_timeout_seconds": SHORT_TIMEOUT_S,
            "http_body_timeout_seconds": SHORT_TIMEOUT_S,
        }
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def small_cap(server_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(server_settings.model_copy(update={"http_max_connections": SMALL_CAP})) as live:
        yield live


def test_a_connection_that_stops_in_its_request_line_is_closed(quick_timeouts: LiveServer) -> None:
    with connect(quick_timeouts.url) as sock:
        sock.sendall(b"GET /healthz HT")
        assert closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_closed(quick_timeouts: LiveServer) -> None:
    with connect(quick_timeouts.url) as sock:
        assert closed_by_server(sock)


def test_a_keep_alive_connection_that_stops_in_its_next_request_is_closed(
    quick_timeouts: LiveServer,
) -> None:
    with connect(quick_timeouts.url) as sock:
        # Headers sent slowly but within the deadline are answered...
        for part in (b"GET /hea", b"lthz HTTP/1.1\r\nHo", b"st: x\r\n\r\n"):
            sock.sendall(part)
            time.sleep(SHORT_TIMEOUT_S / 5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # ...and the next request's deadline counts from that response. The parts are
        # less than uvicorn's keep-alive timeout (5 s) apart: only that deadline can end it.
        for part in (b"GET /heal", b"thz HTTP/1.1\r\n", b"Host: x\r\n"):
            sock.sendall(part)
            time.sleep(SHORT_TIMEOUT_S / 2)
        assert closed_by_server(sock)


def test_a_request_that_stops_in_its_body_is_closed(quick_timeouts: LiveServer) -> None:
    key = provision_user(quick_timeouts.settings, name=f"user-{secrets.token_hex(4)}")
    head = (
        "POST /v1alpha/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Goog-Api-Key: {key}\r\nContent-Length: 100\r\n\r\n"
    )
    with connect(quick_timeouts.url) as sock:
        sock.sendall(head.encode() + b'{"prompt": "')
        assert closed_by_server(sock)


def test_beyond_the_connection_cap_a_request_gets_a_503_envelope(small_cap: LiveServer) -> None:
    """Every served connection is in the middle of a request (stalled in its body), so a
    new one is refused with Retry-After; once they end, requests are served again."""
    key = provision_user(small_cap.settings, name=f"user-{secrets.token_hex(4)}")
    head = (
        "POST /v1alpha/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Goog-Api-Key: {key}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    busy = [connect(small_cap.url) for _ in range(SMALL_CAP)]
    try:
        for sock in busy:
            sock.sendall(head + b'{"prompt": "')
        time.sleep(0.5)  # the server reads them (nothing to observe from outside)
        refused = httpx.get(f"{small_cap.url}/healthz", timeout=ACTED_WITHIN_S)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["status"] == "UNAVAILABLE"
        assert refused.json()["error"]["code"] == 503
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        for sock in busy:
            sock.close()
    assert _eventually_ok(f"{small_cap.url}/healthz")


def test_at_the_cap_a_new_request_replaces_the_longest_idle_connection(
    small_cap: LiveServer,
) -> None:
    idle = [connect(small_cap.url) for _ in range(SMALL_CAP)]
    try:
        time.sleep(0.5)  # all accepted
        answered = httpx.get(f"{small_cap.url}/healthz", timeout=ACTED_WITHIN_S)
        assert answered.status_code == 200, answered.text
        assert closed_by_server(idle[0])  # the oldest one made room
        assert still_open(idle[-1])
    finally:
        for sock in idle:
            sock.close()


def test_a_flood_of_invalid_requests_is_logged_once(
    quick_timeouts: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(INVALID_REQUESTS):
        with connect(quick_timeouts.url) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    said = [r.getMessage() for r in caplog.records if "Invalid HTTP request" in r.getMessage()]
    # One line, then (after LOG_INTERVAL_SECONDS) one more with the count of the rest.
    assert len(said) == 1, said


def _eventually_ok(url: str) -> bool:
    deadline = time.monotonic() + ACTED_WITHIN_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=ACTED_WITHIN_S).status_code == 200:
                return True
        time.sleep(0.1)
    return False


# --- many slow clients against a server with few descriptors -----------------------------

OPEN_FILES = 256  # the server process's limit (soft and hard)
SLOW_CLIENTS = 600  # more than it has descriptors
MAX_STDERR_BYTES = 20_000


@pytest.fixture
def few_descriptors(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``openjules serve`` (SQLite, no workers) limited to OPEN_FILES descriptors; its URL
    and the file its stderr goes to."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENJULES_")}
    env.update(HOME=str(tmp_path), OPENJULES_MAX_CONCURRENT_SESSIONS="0", PYTHONUNBUFFERED="1")
    stderr = tmp_path / "serve.err"
    command = [openjules_executable(), "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=limit,  # only setrlimit, in the child
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert _eventually_ok(f"{url}/healthz"), stderr.read_text()
        yield url, stderr
    finally:
        proc.kill()
        proc.wait(timeout=ACTED_WITHIN_S)


def test_a_normal_client_is_served_while_more_slow_clients_than_descriptors_wait(
    few_descriptors: tuple[str, Path],
) -> None:
    url, stderr = few_descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SLOW_CLIENTS + 100
    assert hard >= needed, f"this test opens {SLOW_CLIENTS} sockets"
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = connect(url)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end
            slow.append(sock)
        time.sleep(0.5)
        for _ in range(5):
            answered = httpx.get(f"{url}/healthz", timeout=ACTED_WITHIN_S)
            assert answered.status_code == 200, answered.text
    finally:
        for sock in slow:
            sock.close()
    # Running out of descriptors, if it happens at all, is a line now and then, not a
    # traceback per failed accept.
    assert stderr.stat().st_size < MAX_STDERR_BYTES, stderr.read_text()[-3000:]
