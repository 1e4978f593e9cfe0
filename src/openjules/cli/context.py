"""Shared CLI plumbing: settings from flags and env (checked before anything runs), saying
which database a command uses, and running store calls with errors as one-line messages."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import APIError
from openjules.settings import Settings, SettingsError, load_settings
from openjules.store.database import sqlite_path
from openjules.store.oneshot import run_write

T = TypeVar("T")

FLAG_NAMES = {"data_dir": "--data-dir", "database_url": "--database-url"}

# Databases this process has already named on stderr (one note per database).
_announced: set[str] = set()


def database_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir`` and ``--database-url`` on every command that touches the database;
    the command receives ``settings``, already checked (a bad one is a one-line error)."""

    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Data directory [env OPENJULES_DATA_DIR; default ~/.openjules].",
    )
    @click.option(
        "--database-url",
        default=None,
        help="sqlite+aiosqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
        "[env OPENJULES_DATABASE_URL; default SQLite in the data directory].",
    )
    @wraps(func)
    def wrapper(*args: Any, data_dir: Path | None, database_url: str | None, **kwargs: Any) -> Any:
        overrides: dict[str, Any] = {}
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        if database_url is not None:
            overrides["database_url"] = database_url
        settings = settings_from(overrides)
        if not settings.database_url:
            check_data_dir(settings)
        else:
            _check_sqlite_file(settings)
        return func(*args, settings=settings, **kwargs)

    return wrapper


def settings_from(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment and flags; a bad value stops the command."""
    try:
        return load_settings(overrides, names=FLAG_NAMES)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def check_data_dir(settings: Settings) -> None:
    """Stop with a message if the data directory is a file or cannot be created. Nothing
    is created here: that waits until the command uses it."""
    _check_directory(settings.data_dir, _data_dir_subject(settings))


def _data_dir_subject(settings: Settings) -> str:
    path = settings.data_dir
    if _given_as_flag("data_dir"):
        return f"--data-dir {path}"
    if "data_dir" in settings.model_fields_set:
        return f"OPENJULES_DATA_DIR={path}"
    return f"The data directory {path} (the default; pass --data-dir or set OPENJULES_DATA_DIR)"


def _given_as_flag(param: str) -> bool:
    context = click.get_current_context(silent=True)
    if context is None:
        return False
    return context.get_parameter_source(param) is click.core.ParameterSource.COMMANDLINE


def _check_sqlite_file(settings: Settings) -> None:
    """For a SQLite ``--database-url``: its directory must be one, or creatable."""
    path = sqlite_file(settings)
    if path is None:
        return
    flag = "--database-url" if _given_as_flag("database_url") else "OPENJULES_DATABASE_URL"
    if path.is_dir():
        raise click.ClickException(f"{flag}: {path} is a directory, not a database file.")
    _check_directory(path.parent, f"The directory of {flag} ({path.parent})")


def _check_directory(path: Path, subject: str) -> None:
    if path.exists():
        if not path.is_dir():
            raise click.ClickException(f"{subject} is a file, not a directory.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise click.ClickException(f"{subject} is not writable.")
        return
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        raise click.ClickException(f"{subject} cannot be created: {existing} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.ClickException(
            f"{subject} cannot be created: no permission to write in {existing}."
        )


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite database file the settings name, if the database is SQLite."""
    try:
        return sqlite_path(settings.resolved_database_url())
    except ArgumentError:
        return None


@contextmanager
def database_work(settings: Settings, *, hint: bool = True) -> Iterator[None]:
    """Say on stderr which database is used (once) and, afterwards, if a new SQLite file
    was just created (``hint``: also how to point the command at another database);
    store errors become one-line CLI errors."""
    url = settings.resolved_database_url()
    file = sqlite_file(settings)
    is_new = file is not None and not file.exists()
    if url not in _announced:
        _announced.add(url)
        click.echo(f"database: {describe_database(settings)}", err=True)
    try:
        yield
    except APIError as exc:
        raise click.ClickException(exc.message) from exc
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise click.ClickException(
            f"Cannot use the database {describe_database(settings)}: {reason}"
        ) from exc
    except OSError as exc:
        raise click.ClickException(
            f"Cannot use the database {describe_database(settings)}: {exc}"
        ) from exc
    if is_new and file is not None and file.exists():
        note = "a new, empty database was created there"
        if hint:
            how = (
                "set OPENJULES_DATABASE_URL or pass --database-url"
                if settings.database_url
                else "set OPENJULES_DATA_DIR or pass --data-dir"
            )
            note += f": if your server uses another one, {how}"
        click.echo(note, err=True)


def run_in_db(
    settings: Settings, action: Callable[[AsyncConnection], Awaitable[T]], *, hint: bool = True
) -> T:
    """Migrate, then run ``action`` in one write transaction (see ``database_work``)."""
    with database_work(settings, hint=hint):
        return run_write(settings.resolved_database_url(), action)


def describe_database(settings: Settings) -> str:
    """The database URL without credentials, for messages."""
    url = settings.resolved_database_url()
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('@')[-1]}"
