"""Shared CLI plumbing: settings from flags and env, and running store calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import APIError
from openjules.settings import Settings
from openjules.store.oneshot import run_write

T = TypeVar("T")


def database_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir`` and ``--database-url`` on every command that touches the database."""

    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Data directory [env OPENJULES_DATA_DIR; default ~/.openjules].",
    )
    @click.option(
        "--database-url",
        default=None,
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
        "[env OPENJULES_DATABASE_URL; default SQLite in the data directory].",
    )
    @wraps(func)
    def wrapper(*args: Any, data_dir: Path | None, database_url: str | None, **kwargs: Any) -> Any:
        overrides: dict[str, Any] = {}
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        if database_url is not None:
            overrides["database_url"] = database_url
        return func(*args, settings=Settings(**overrides), **kwargs)

    return wrapper


def run_in_db(settings: Settings, action: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Migrate, then run ``action`` in one write transaction; APIErrors become CLI errors."""
    try:
        return run_write(settings.resolved_database_url(), action)
    except APIError as exc:
        raise click.ClickException(exc.message) from exc
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise click.ClickException(
            f"Cannot use the database {describe_database(settings)}: {reason}"
        ) from exc


def describe_database(settings: Settings) -> str:
    """The database URL without credentials, for messages."""
    url = settings.resolved_database_url()
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('@')[-1]}"
