"""`openjules keys create|list|revoke` against the database of a live server."""

from __future__ import annotations

import re
import secrets
import subprocess

import httpx
import psycopg

from openjules.testing import LiveServer, provision_user
from tests.cli.support import KEY_LINE, Target, create_key, ok, run_openjules
from tests.support import api_client


def _status(server: LiveServer, key: str) -> int:
    response = httpx.get(f"{server.api}/sources", headers={"X-Goog-Api-Key": key}, timeout=30)
    return response.status_code


def _live_ids(listing: str) -> list[str]:
    """Key ids of the live keys in `keys list` output (a header line, then one key a line)."""
    return [line.split()[0] for line in listing.splitlines()[1:] if line.split()[-1] == "live"]


def test_created_key_is_the_last_line_authenticates_and_is_stored_hashed(
    server: LiveServer, server_target: Target, backend: str
) -> None:
    user = f"cli-{secrets.token_hex(4)}"
    result = run_openjules(server_target, "keys", "create", "--user", user)
    out = ok(result)
    lines = out.splitlines()
    key = lines[-1]
    assert KEY_LINE.match(key), out
    assert out.count(key) == 1, "the key is printed once"
    assert len(lines) >= 2
    assert user in lines[0], "a human line says whose key it is"

    for header in ("X-Goog-Api-Key", "x-goog-api-key", "X-GOOG-API-KEY"):
        response = httpx.get(f"{server.api}/sessions", headers={header: key}, timeout=30)
        assert response.status_code == 200, (header, response.text)
    assert httpx.get(f"{server.api}/sessions", params={"key": key}, timeout=30).status_code == 200

    # The key writes as well as reads.
    with api_client(server.api, key) as c:
        session = c.post("/sessions", json={"prompt": "made with a CLI key"}).json()
        assert c.get(f"/sessions/{session['id']}").status_code == 200

    assert_not_stored(key, server=server, target=server_target, backend=backend)


def secret_part(key: str) -> str:
    """The random part of ``ojk_<hex id>_<random>``. The random part is URL-safe base64 and
    may itself contain or end with "_", so split after the id, not at the last "_"."""
    prefix, key_id, random = key.split("_", 2)
    assert (prefix, len(key_id), len(random)) == ("ojk", 12, 40), key
    return random


def assert_not_stored(key: str, *, server: LiveServer, target: Target, backend: str) -> None:
    """Neither the key nor its random part appears in the database (files, for SQLite)."""
    random_part = secret_part(key)
    if backend == "sqlite":
        # Read through other processes: opening and closing the files here would drop the
        # POSIX locks of the in-process server's own SQLite connections.
        db_file = target.sqlite_file
        dump = subprocess.run(
            ["sqlite3", str(db_file), "SELECT * FROM api_keys; SELECT * FROM users;"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        assert "|" in dump, "api_keys has rows"
        stored = dump
        files = [str(p) for p in (db_file, *db_file.parent.glob(f"{db_file.name}-*"))]
        for needle in (key, random_part):
            found = subprocess.run(
                ["grep", "-a", "-F", "-l", "-e", needle, *files],
                capture_output=True, text=True, timeout=30, check=False,
            )
            assert found.returncode == 1, f"the key is stored in clear in {found.stdout}"
    else:
        url = server.settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT * FROM api_keys").fetchall()
            assert rows, "api_keys has rows"
            rows += conn.execute("SELECT * FROM users").fetchall()
        stored = repr(rows)
    assert key not in stored
    assert random_part not in stored


def test_key_limit_list_revoke_and_replace(server: LiveServer, server_target: Target) -> None:
    user = f"cli-{secrets.token_hex(4)}"
    # Two keys made straight in the database, the third (and the refused fourth) by the CLI.
    keys = [provision_user(server.settings, name=user) for _ in range(2)]
    created = ok(run_openjules(server_target, "keys", "create", "--user", user))
    keys.append(created.splitlines()[-1])
    assert len(set(keys)) == 3

    fourth = run_openjules(server_target, "keys", "create", "--user", user)
    assert fourth.returncode != 0
    assert "Traceback" not in fourth.stderr
    assert re.search(r"limit\D{0,20}\b3\b", fourth.stderr), fourth.stderr
    assert "ojk_" not in fourth.stdout + fourth.stderr, "no key is shown when refused"

    listing = ok(run_openjules(server_target, "keys", "list", "--user", user))
    ids = _live_ids(listing)
    assert len(ids) == 3
    for key in keys:
        assert key not in listing, "keys list never shows a secret"
        assert secret_part(key) not in listing

    # `keys create` names the new key's id on its first line; the listing shows the same id.
    revoked_id = next(i for i in ids if i in created.splitlines()[0])
    revoked_key = keys[2]
    assert _status(server, revoked_key) == 200
    ok(run_openjules(server_target, "keys", "revoke", revoked_id))
    response = httpx.get(
        f"{server.api}/sessions", headers={"X-Goog-Api-Key": revoked_key}, timeout=30
    )
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert httpx.get(
        f"{server.api}/sessions", params={"key": revoked_key}, timeout=30
    ).status_code == 401
    for other in keys:
        if other != revoked_key:
            assert _status(server, other) == 200, "revoking one key leaves the others working"

    everything = ok(run_openjules(server_target, "keys", "list", "--user", user, "--all"))
    assert revoked_id in everything
    assert "revoked" in everything
    assert revoked_id not in _live_ids(everything)
    assert len(_live_ids(everything)) == 2

    again = run_openjules(server_target, "keys", "revoke", revoked_id)
    assert again.returncode != 0
    assert "Traceback" not in again.stderr
    assert revoked_id in again.stderr

    replacement = create_key(server_target, user)
    assert _status(server, replacement) == 200
    assert _status(server, revoked_key) == 401


def test_key_limit_is_configurable(server: LiveServer, server_target: Target) -> None:
    user = f"cli-{secrets.token_hex(4)}"
    key = provision_user(server.settings, name=user)  # one live key: the default limit is 3
    one = server_target.with_env(OPENJULES_MAX_KEYS_PER_USER="1")
    refused = run_openjules(one, "keys", "create", "--user", user)
    assert refused.returncode != 0
    assert re.search(r"limit\D{0,20}\b1\b", refused.stderr), refused.stderr
    assert "Traceback" not in refused.stderr
    assert _status(server, key) == 200
