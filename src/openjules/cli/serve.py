"""``openjules serve``: the API server with embedded defaults (SQLite in ~/.openjules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.cli.context import describe_database, run_in_db
from openjules.settings import Settings
from openjules.store import users


@click.command()
@click.option("--host", default=None, help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default 8080].")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data directory [env OPENJULES_DATA_DIR; default ~/.openjules].",
)
@click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL [env OPENJULES_DATABASE_URL; default SQLite in data dir].",
)
def serve(
    host: str | None, port: int | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Run the Jules-compatible API server."""
    # Imported here: the web stack costs ~0.5 s of start-up every other command avoids.
    import uvicorn

    from openjules.api import create_app

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "database_url": database_url,
        }.items()
        if v is not None
    }
    settings = Settings(**overrides)

    async def bootstrap(conn: AsyncConnection) -> str | None:
        if await users.count_users(conn):
            return None
        user = await users.get_or_create_user(conn, name=settings.default_user)
        key = await users.create_key(conn, user=user, max_live_keys=settings.max_keys_per_user)
        return key.secret

    first_key = run_in_db(settings, bootstrap)
    if first_key:
        click.echo(
            f"First start: created user {settings.default_user!r} with this API key "
            "(shown only once; store it now):"
        )
        click.echo(first_key)
    base = settings.resolved_public_base_url()
    click.echo(
        f"openjules listening on http://{settings.host}:{settings.port} "
        f"(API base {base}/v1alpha, database {describe_database(settings)})"
    )
    uvicorn.run(
        create_app(settings, migrate=False),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )
