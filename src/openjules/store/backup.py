"""Copies of the embedded SQLite database with SQLite's online backup API.

A backup may be taken while servers write: the source connection holds one read
transaction for the whole copy, so every page comes from the same WAL snapshot (what was
committed when the copy started; writers carry on meanwhile). Without it, the copy would
restart from the first page each time another connection commits between two steps, and
might never finish on a busy server. The copy is written to a temporary file next to the
destination and renamed at the end, so the destination is never a half-written file.

A restore needs the database to itself: it takes SQLite's exclusive lock on the target
(``locking_mode=EXCLUSIVE``). Every open connection in WAL mode holds a shared lock on the
database file, so while a server or worker has the database open the lock is refused, and
once it is taken no server can open the database until the restore ends. The previous
database is copied aside first; the backup is copied to a staging file and migrated there;
the staged copy then replaces the target in one write transaction (a crash leaves the old
database, never a mix).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from alembic.script import ScriptDirectory

from openjules.store.database import DEFAULT_BUSY_TIMEOUT_S, sqlite_path
from openjules.store.migrate import alembic_config, upgrade_to_head

# Pages copied per backup step (4 MiB at the default page size): the unit of progress.
STEP_PAGES = 1024
# How long restore waits for a lock held briefly (another CLI command) before it decides a
# server holds the database open.
LOCK_TIMEOUT_S = 2.0
# How long the copy's reads wait behind a writer (as long as the server's own busy timeout).
READ_TIMEOUT_S = DEFAULT_BUSY_TIMEOUT_S
SQLITE_HEADER = b"SQLite format 3\x00"
# What makes a database an openjules one (besides Alembic's version table).
REQUIRED_TABLES = frozenset({"alembic_version", "sessions", "activities", "users", "api_keys"})

# Called with (bytes copied, bytes in all) after each step.
Progress = Callable[[int, int], None]


class BackupError(Exception):
    """A backup or restore that cannot be done; ``str()`` is one line saying why."""


class DestinationExists(BackupError):
    """The backup's destination exists and overwriting was not asked for."""


class DatabaseInUse(BackupError):
    """Another process (a server, a worker) has the database open."""


@dataclass(frozen=True)
class Contents:
    """What an openjules database file holds."""

    path: Path
    size_bytes: int
    sessions: int
    activities: int
    revision: str


@dataclass(frozen=True)
class Restored:
    contents: Contents
    # The schema revision of the backup before it was migrated to this version's.
    backup_revision: str
    # Where the database that was replaced now is (None: there was none).
    kept_aside: Path | None


def backup_database(
    *, database: Path, destination: Path, overwrite: bool, progress: Progress | None = None
) -> Contents:
    """Copy ``database`` (in use or not) to ``destination``, a self-contained file."""
    if not database.is_file():
        raise BackupError(f"There is no database at {database}: nothing to back up.")
    if destination.is_dir():
        raise BackupError(f"{destination} is a directory: give the path of the backup file.")
    if not destination.parent.is_dir():
        raise BackupError(f"Cannot write {destination}: {destination.parent} is not a directory.")
    if _same_file(destination, database):
        raise BackupError(f"{destination} is the database itself: choose another path.")
    if destination.exists() and not overwrite:
        raise DestinationExists(f"{destination} already exists.")
    staging = _staging_path(destination, "partial")
    try:
        with closing(_connect_read_only(database)) as source:
            # The snapshot starts at the first read, so read before copying anything.
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()
            _copy(source, staging, progress=progress)
            source.execute("COMMIT")
        contents = inspect_database(staging)
        _fsync(staging)
        _place(staging, destination, overwrite=overwrite)
    finally:
        _remove(staging)
    return replace(contents, path=destination)


def restore_database(
    *, backup: Path, database: Path, now: datetime, progress: Progress | None = None
) -> Restored:
    """Replace ``database`` by the openjules backup ``backup``, migrated to this version's
    schema. Refused while any process has ``database`` open; the database it replaces is
    kept next to it as ``<name>.before-restore-<UTC time>``."""
    checked = check_backup(backup)
    if _same_file(backup, database):
        raise BackupError(f"{backup} is the database itself: nothing to restore.")
    database.parent.mkdir(parents=True, exist_ok=True)
    with closing(_lock_exclusively(database)) as target:
        kept_aside = None
        # A file without tables (just created by the connection above) is not kept.
        if target.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0:
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            kept_aside = database.with_name(f"{database.name}.before-restore-{stamp}")
            if kept_aside.exists():
                raise BackupError(f"{kept_aside} already exists: try again in a second.")
            _copy(target, kept_aside)
            _fsync(kept_aside)
        staging = _staging_path(database, "restoring")
        try:
            with closing(_connect_read_only(backup)) as source:
                _copy(source, staging)
            upgrade_to_head(f"sqlite:///{staging}")
            contents = inspect_database(staging)
            with closing(sqlite3.connect(staging, isolation_level=None)) as staged:
                # Out of WAL mode the copy may change the page size (a backup made with
                # another page size); switching needs the exclusive lock held here.
                target.execute("PRAGMA journal_mode=DELETE")
                staged.backup(target, pages=STEP_PAGES, progress=_reporter(staged, progress))
                target.execute("PRAGMA journal_mode=WAL")
        finally:
            _remove(staging)
    return Restored(
        contents=replace(contents, path=database),
        backup_revision=checked.revision,
        kept_aside=kept_aside,
    )


@contextmanager
def keep_open(url: str) -> Iterator[None]:
    """Hold the SQLite database at ``url`` open while the context runs (nothing for other
    databases), so that ``restore_database`` sees this process and refuses. A server's
    pooled connections are not enough: an idle server may have none open."""
    file = sqlite_path(url)
    if file is None:
        yield
        return
    with closing(sqlite3.connect(file, isolation_level=None)) as conn:
        # In WAL mode (the server's) an open connection keeps a shared lock on the file,
        # even between transactions; in rollback-journal mode it would hold none.
        conn.execute(f"PRAGMA busy_timeout={int(READ_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        yield


def check_backup(path: Path) -> Contents:
    """``path``'s contents, if it is an openjules database this version can restore."""
    if not path.exists():
        raise BackupError(f"{path} does not exist.")
    if not path.is_file():
        raise BackupError(f"{path} is not a file.")
    with path.open("rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise BackupError(f"{path} is not a SQLite database.")
    try:
        with closing(_connect_read_only(path)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a readable SQLite database: {exc}.") from None
    missing = REQUIRED_TABLES - tables
    if missing:
        raise BackupError(
            f"{path} is a SQLite database but not an openjules one "
            f"(no table {', '.join(sorted(missing))})."
        )
    contents = inspect_database(path)
    known = known_revisions()
    if contents.revision not in known:
        raise BackupError(
            f"{path} has schema revision {contents.revision!r}, newer than this openjules "
            f"knows (up to {known[-1]}): restore it with the openjules version that wrote it."
        )
    return contents


def inspect_database(path: Path) -> Contents:
    """Counts and schema revision of an openjules database file (read-only)."""
    with closing(_connect_read_only(path)) as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        activities = conn.execute("SELECT count(*) FROM activities").fetchone()[0]
    return Contents(
        path=path,
        size_bytes=path.stat().st_size,
        sessions=int(sessions),
        activities=int(activities),
        revision=str(revision[0]) if revision else "",
    )


def known_revisions() -> list[str]:
    """Every schema revision this version's migrations know, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _connect_read_only(path: Path) -> sqlite3.Connection:
    # mode=ro: a backup never writes to the live database or to the user's backup file.
    return sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro",
        uri=True,
        isolation_level=None,
        timeout=READ_TIMEOUT_S,
    )


def _lock_exclusively(database: Path) -> sqlite3.Connection:
    """A connection holding ``database``'s exclusive lock until it is closed."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=LOCK_TIMEOUT_S)
    try:
        # In exclusive locking mode a lock, once taken, is kept after the transaction.
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        conn.close()
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise DatabaseInUse(
                f"The database {database} is in use (an openjules server or worker has it "
                "open): stop it, then restore."
            ) from None
        raise
    return conn


def _copy(source: sqlite3.Connection, path: Path, *, progress: Progress | None = None) -> None:
    """``source``'s database into the new file ``path``, left in rollback-journal mode so
    it is one self-contained file (no -wal beside it)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as target:
        source.backup(target, pages=STEP_PAGES, progress=_reporter(source, progress))
        target.execute("PRAGMA journal_mode=DELETE")


def _reporter(
    source: sqlite3.Connection, progress: Progress | None
) -> Callable[[int, int, int], object] | None:
    if progress is None:
        return None
    page_size = int(source.execute("PRAGMA page_size").fetchone()[0])

    def report(_status: int, remaining: int, total: int) -> None:
        progress((total - remaining) * page_size, total * page_size)

    return report


def _staging_path(beside: Path, purpose: str) -> Path:
    # Hidden and unique, in the destination's directory so the final rename is atomic.
    return beside.with_name(f".{beside.name}.{purpose}-{secrets.token_hex(4)}")


def _place(staging: Path, destination: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(staging, destination)
    else:
        # link() fails if the destination appeared meanwhile: never overwritten unasked.
        try:
            os.link(staging, destination)
        except FileExistsError:
            raise DestinationExists(f"{destination} already exists.") from None
    _fsync_directory(destination.parent)


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _remove(path: Path) -> None:
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
