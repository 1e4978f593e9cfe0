"""A PostgreSQL outage, for real: the server reaches its database through a TCP proxy,
and the proxy is cut (every connection reset, new ones refused) while the shared
PostgreSQL cluster keeps running for everyone else.

During the outage every API call answers 503 UNAVAILABLE with Retry-After (never 500,
never a dropped connection: one keep-alive client goes on working), ``/readyz`` says the
database is away and ``/healthz`` that the process is up. The engine rides it out,
logging it once. After the proxy is restored, requests succeed again within seconds and
the engine runs sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from openjules.settings import Settings
from openjules.store import tables, users
from openjules.store.clock import now_us
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head
from openjules.testing import LiveServer, TcpProxy, provision_user
from tests.conftest import drop_database, fresh_database
from tests.support import api_client, ok_json

OUTAGE_S = 10.0
RECOVERY_TIMEOUT_S = 15.0
SETTLE_TIMEOUT_S = 30.0
POSTGRES_PORT = 5432


@pytest.fixture
def proxied_settings(postgres_admin: str, tmp_path: Path) -> Iterator[tuple[Settings, TcpProxy]]:
    """Settings of a server whose fresh database is reached through a ``TcpProxy``."""
    url, name = fresh_database("postgresql", tmp_path, postgres_admin)
    assert name is not None
    with TcpProxy(target_port=POSTGRES_PORT) as proxy:
        proxied = url.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/", 1)
        assert proxied != url
        # One worker: the engine runs (and polls) throughout; no model, so a session it
        # runs fails at once with "no model configured", which is all this test needs.
        yield Settings(data_dir=tmp_path, database_url=proxied, workers=1), proxy
    drop_database(postgres_admin, name)


def _wait_state(client: httpx.Client, session_id: str, state: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = client.get(f"/sessions/{session_id}")
        if answer.status_code == 200 and answer.json().get("state") == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"session {session_id} never reached {state}")


def _assert_unavailable(answer: httpx.Response, what: str) -> None:
    assert answer.status_code == 503, f"{what}: {answer.status_code} {answer.text[:300]}"
    assert answer.json()["error"]["status"] == "UNAVAILABLE", what
    assert int(answer.headers["Retry-After"]) > 0, what


def test_postgres_outage_answers_503_and_the_server_recovers(
    proxied_settings: tuple[Settings, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    settings, proxy = proxied_settings
    caplog.set_level(logging.INFO, logger="openjules")
    with LiveServer(settings) as server:
        key = provision_user(server.settings, name="outage")
        # One keep-alive connection for the whole test: it must survive every 503.
        with api_client(server.api, key) as client, httpx.Client(base_url=server.url) as root:
            before = ok_json(client.post("/sessions", json={"prompt": "before"}))["id"]
            _wait_state(client, before, "FAILED")  # the engine ran it (no model)
            assert root.get("/readyz").status_code == 200

            proxy.cut()
            cut_at = time.monotonic()
            calls = 0
            while time.monotonic() - cut_at < OUTAGE_S:
                _assert_unavailable(client.get(f"/sessions/{before}"), "get")
                _assert_unavailable(client.post("/sessions", json={"prompt": "x"}), "create")
                _assert_unavailable(client.get("/sessions"), "list")
                ready = root.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert root.get("/healthz").status_code == 200
                calls += 3
                time.sleep(0.3)
            outage_records = [r for r in caplog.records if r.name == "openjules.runner"]

            proxy.restore()
            restored_at = time.monotonic()
            while True:
                answer = client.get(f"/sessions/{before}")
                if answer.status_code == 200:
                    break
                _assert_unavailable(answer, "get after restore")
                assert time.monotonic() - restored_at < RECOVERY_TIMEOUT_S, "never recovered"
                time.sleep(0.2)
            recovery_s = time.monotonic() - restored_at
            assert root.get("/readyz").status_code == 200

            after = ok_json(client.post("/sessions", json={"prompt": "after"}))["id"]
            _wait_state(client, after, "FAILED")  # the engine still runs sessions

    # The engine logged the outage once (not once per poll), without a traceback.
    runner_lines = [r.getMessage() for r in outage_records]
    assert len(runner_lines) == 1, runner_lines
    assert "database is unavailable" in runner_lines[0]
    assert all(r.exc_info is None for r in outage_records)
    print(f"{calls} API calls during a {OUTAGE_S:.0f} s outage; recovered in {recovery_s:.2f} s")


async def test_a_failing_statement_is_not_an_outage(server_settings: Settings) -> None:
    """Only connection-class failures are "unavailable": a constraint violation stays an
    IntegrityError (a 500 to fix, or a conflict the caller handles), on both backends."""
    url = server_settings.resolved_database_url()
    await asyncio.to_thread(upgrade_to_head, url)
    db = Database(url)
    try:
        async with db.write() as conn:
            user = await users.get_or_create_user(conn, name="integrity")
        with pytest.raises(IntegrityError):
            async with db.write() as conn:
                await conn.execute(
                    tables.users.insert().values(name=user.name, create_time=now_us())
                )
        await db.ping()  # and the database is still there
    finally:
        await db.dispose()
