"""SQLite under the server's own concurrency: writes wait their turn, they never fail.

The probe of issue 9 (finding 4): with 32 workers and 100 concurrent creates, some
creates answered 500 "database is locked" and the runner logged lock errors. Here a real
server on SQLite runs 32 workers and no model: every create enqueues a job, which a
worker claims and fails at once ("no model configured"), so the API's writes (create,
enqueue) race the workers' writes (claim, fail, finish) and their polls.

SQLite's busy timeout is set short (the default, 10 s, only fails under heavier load or
on a slower machine): a write of the server that waited on SQLite's lock behind the
server's own writes would fail within it. Writes that take turns in the process never
wait on SQLite's lock, whatever the timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer, provision_user
from tests.support import api_client

CREATES = 100
WORKERS = 32
BUSY_TIMEOUT_S = 0.25
SETTLE_TIMEOUT_S = 120.0


def _lock_errors(records: list[logging.LogRecord]) -> list[str]:
    """Log lines (with their tracebacks) that report SQLite's lock error."""
    found = []
    for record in records:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        if record.exc_text:
            text += f" {record.exc_text}"
        if "database is locked" in text:
            found.append(f"{record.name}: {text[:300]}")
    return found


def test_concurrent_creates_with_32_workers_all_succeed_without_lock_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openjules")
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'openjules.db'}",
        workers=WORKERS,
        auth_cache_seconds=60,
        database_busy_timeout_seconds=BUSY_TIMEOUT_S,
    )
    with LiveServer(settings) as server:
        key = provision_user(server.settings, name="contention")
        start = threading.Barrier(CREATES)

        def create(i: int) -> httpx.Response:
            with api_client(server.api, key, timeout=60) as client:
                start.wait()
                return client.post("/sessions", json={"prompt": f"task {i}"})

        with ThreadPoolExecutor(max_workers=CREATES) as pool:
            answers = list(pool.map(create, range(CREATES)))

        failed = [f"{a.status_code}: {a.text[:200]}" for a in answers if a.status_code != 200]
        assert failed == [], f"{len(failed)} of {CREATES} creates failed: {failed[:5]}"
        ids = [a.json()["id"] for a in answers]

        # Every session reaches FAILED (no model): the workers did all their writes too.
        with api_client(server.api, key) as client:
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            pending = set(ids)
            while pending and time.monotonic() < deadline:
                for sid in list(pending):
                    if client.get(f"/sessions/{sid}").json().get("state") == "FAILED":
                        pending.discard(sid)
                if pending:
                    time.sleep(0.2)
            assert not pending, f"{len(pending)} sessions never failed for want of a model"

    assert _lock_errors(caplog.records) == []
