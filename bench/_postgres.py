"""A scratch PostgreSQL database for one benchmark run."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg


class BenchError(RuntimeError):
    """The benchmark could not run (its message says why)."""


@contextlib.contextmanager
def postgres_database(admin: str) -> Iterator[str]:
    """A new database on the server of ``admin`` (a libpq URL), as an SQLAlchemy URL;
    dropped afterwards."""
    name = f"openjules_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(f"cannot create a database via {admin}: {exc}") from None
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
