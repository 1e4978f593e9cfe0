"""``openjules backup`` and ``openjules restore``: copies of the embedded SQLite database
(the work is in ``openjules.store.backup``; PostgreSQL has pg_dump)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from openjules.cli.context import database_options, describe_database, sqlite_file
from openjules.settings import Settings
from openjules.store.backup import (
    BackupError,
    Contents,
    DestinationExists,
    Progress,
    backup_database,
    restore_database,
)

README_SECTION = 'the "Backups" section of the README'
# Databases smaller than this are copied in well under a second: no progress lines.
PROGRESS_FROM_BYTES = 64 * 1024 * 1024


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@database_options
def backup(path: Path, force: bool, *, settings: Settings) -> None:
    """Back up the SQLite database to PATH, even while a server runs.

    PATH gets every session, activity, source, user and API key committed when the copy
    started, consistently; the server keeps serving and writing meanwhile. PATH is written under a
    temporary name and renamed when complete, and an existing PATH is kept unless --force.
    Restore it with `openjules restore PATH`. A PostgreSQL database is backed up with
    pg_dump instead (see "Backups" in the README).
    """
    database = _sqlite_database(settings, verb="backed up", tool="pg_dump")
    with _one_line_errors(database):
        try:
            contents = backup_database(
                database=database, destination=path, overwrite=force, progress=_progress()
            )
        except DestinationExists as exc:
            raise click.ClickException(f"{exc} Pass --force to overwrite it.") from None
    click.echo(f"Backed up {database} to {path}: {_describe(contents)}.")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@database_options
def restore(path: Path, *, settings: Settings) -> None:
    """Restore the SQLite database from PATH (stop the server first).

    PATH must be an openjules database (e.g. made by `openjules backup`). The restore
    refuses while a server or worker has the database open. PATH is copied into place in
    one transaction and migrated to this version's schema; the database it replaces is
    kept next to it, named like this:

    \b
        openjules.db.before-restore-20260102T030405Z

    A PostgreSQL database is restored with pg_restore instead (see "Backups" in the
    README).
    """
    database = _sqlite_database(settings, verb="restored", tool="pg_restore")
    with _one_line_errors(database):
        restored = restore_database(
            backup=path, database=database, now=datetime.now(UTC), progress=_progress()
        )
    migrated = ""
    if restored.backup_revision != restored.contents.revision:
        migrated = f", migrated from schema {restored.backup_revision}"
    click.echo(f"Restored {path} into {database}: {_describe(restored.contents)}{migrated}.")
    if restored.kept_aside is not None:
        click.echo(f"The previous database is kept at {restored.kept_aside}.")


def _sqlite_database(settings: Settings, *, verb: str, tool: str) -> Path:
    """The SQLite file the settings name; any other database is a one-line refusal."""
    file = sqlite_file(settings)
    if file is not None:
        return file
    url = settings.resolved_database_url()
    if make_url(url).get_backend_name() == "postgresql":
        raise click.ClickException(
            f"The database {describe_database(settings)} is PostgreSQL: it is {verb} with "
            f"{tool}, not by openjules (see {README_SECTION})."
        )
    raise click.ClickException(
        f"The database {describe_database(settings)} is not a SQLite file: nothing to copy."
    )


@contextmanager
def _one_line_errors(database: Path) -> Iterator[None]:
    try:
        yield
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"SQLite failed on {database}: {exc}.") from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise click.ClickException(f"Cannot write{where}: {exc.strerror or exc}.") from None


def _progress() -> Progress:
    """Progress on stderr for large databases, every tenth of the copy."""
    shown = -1

    def report(copied: int, total: int) -> None:
        nonlocal shown
        if total < PROGRESS_FROM_BYTES:
            return
        tenth = copied * 10 // total
        if tenth != shown:
            shown = tenth
            click.echo(f"copied {tenth * 10}% ({_size(copied)} of {_size(total)})", err=True)

    return report


def _describe(contents: Contents) -> str:
    return (
        f"{_size(contents.size_bytes)}, {contents.sessions} sessions, "
        f"{contents.activities} activities (schema {contents.revision})"
    )


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    return f"{n / 1024:.1f} KiB"
