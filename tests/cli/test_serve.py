"""`openjules serve` as a real process: first-start key, flags, environment, clean stop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import psycopg

from tests.cli.support import ServeProcess, Target, run_openjules


def _users_and_keys(target: Target) -> tuple[list[str], int]:
    """User names and the number of API keys, read straight from the database."""
    if target.database_url:
        url = target.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url) as pg:
            names = [r[0] for r in pg.execute("SELECT name FROM users").fetchall()]
            count = pg.execute("SELECT count(*) FROM api_keys").fetchone()
        return names, int(count[0]) if count else 0
    conn = sqlite3.connect(target.sqlite_file)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM users").fetchall()]
        count = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    finally:
        conn.close()
    return names, int(count)


def test_first_start_prints_a_working_key_once(fresh_target: Target) -> None:
    """First start with flags (--data-dir or --database-url); second start finds the same
    database through OPENJULES_DATA_DIR or OPENJULES_DATABASE_URL alone."""
    logs = fresh_target.home / "logs"
    with ServeProcess(fresh_target, log_dir=logs) as first:
        key = first.printed_key()
        assert key is not None, first.output()
        assert f"http://127.0.0.1:{first.port}" in first.stdout(), "says where it listens"
        for header in ("X-Goog-Api-Key", "x-goog-api-key"):
            response = httpx.get(f"{first.api}/sessions", headers={header: key}, timeout=30)
            assert response.status_code == 200, response.text
        assert httpx.get(f"{first.api}/sessions", timeout=30).status_code == 401
        first.terminate_cleanly()

    assert _users_and_keys(fresh_target) == (["default"], 1)
    if fresh_target.backend == "sqlite":
        assert fresh_target.sqlite_file.exists(), "--data-dir holds the SQLite database"

    from_env = Target(
        backend=fresh_target.backend,
        home=fresh_target.home,
        data_dir=fresh_target.data_dir,
        database_url=fresh_target.database_url,
        via_env=True,
    )
    assert from_env.args() == []
    with ServeProcess(from_env, log_dir=logs) as second:
        assert second.printed_key() is None, "a key is printed only on the very first start"
        assert key not in second.stdout()
        response = httpx.get(f"{second.api}/sessions", params={"key": key}, timeout=30)
        assert response.status_code == 200, "the same database, so the first key still works"
        second.terminate_cleanly()

    assert _users_and_keys(fresh_target) == (["default"], 1), "no second user or key"
    assert not (fresh_target.home / ".openjules").exists(), "the default data dir is untouched"


def test_a_second_serve_on_a_used_port_starts_nothing(fresh_target: Target, tmp_path: Path) -> None:
    """One clear line, no "listening" line, and no database created or touched."""
    with ServeProcess(fresh_target, log_dir=fresh_target.home / "logs") as first:
        before = _users_and_keys(fresh_target)
        home = tmp_path / "second-home"
        home.mkdir()
        second_target = Target(backend="sqlite", home=home, data_dir=tmp_path / "second-data")
        second = run_openjules(
            second_target, "serve", "--host", "127.0.0.1", "--port", str(first.port)
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        assert "listening" not in second.stdout + second.stderr
        assert second.stdout == "", "nothing is said about a server that does not start"
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("Error: "), lines
        assert f"127.0.0.1:{first.port}" in lines[0]
        assert "in use" in lines[0]
        assert not second_target.data_dir.exists(), "no database was created"
        assert not (home / ".openjules").exists()

        # The same database as the running server: untouched (no second first-start key).
        again = run_openjules(
            fresh_target, "serve", "--host", "127.0.0.1", "--port", str(first.port)
        )
        assert again.returncode == 1, again.stdout + again.stderr
        assert "ojk_" not in again.stdout + again.stderr
        assert _users_and_keys(fresh_target) == before
        assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200, "still serving"
        first.terminate_cleanly()
