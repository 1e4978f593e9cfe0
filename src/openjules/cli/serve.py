"""``openjules serve``: the API server with embedded defaults (SQLite in ~/.openjules)."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.cli.context import check_data_dir, database_options, describe_database, run_in_db
from openjules.settings import Settings
from openjules.store import users


@click.command()
@click.option("--host", default=None, help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [default 8080].")
@click.option(
    "--http-workers",
    type=click.IntRange(min=0),
    default=None,
    help="HTTP server processes sharing the port [env OPENJULES_HTTP_WORKERS; default 0: "
    "one per CPU core]. The agent runner and the webhook sender run in the first; the rate "
    "limit (OPENJULES_RATE_LIMIT_PER_MINUTE) and the API-key cache are per process.",
)
@database_options
def serve(
    host: str | None, port: int | None, http_workers: int | None, *, settings: Settings
) -> None:
    """Run the Jules-compatible API server."""
    # Imported here: the web stack costs ~0.5 s of start-up every other command avoids.
    from openjules.cli.process_exit import end_process
    from openjules.cli.status import print_status
    from openjules.engine.runner import RunnerUnavailable
    from openjules.http_workers import HttpWorkersFailed, serve_in_processes
    from openjules.http_workers import http_workers as resolved_http_workers
    from openjules.server import PortInUse, bind
    from openjules.server import serve as serve_forever

    given = {"host": host, "port": port, "http_workers": http_workers}
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    processes = resolved_http_workers(settings)
    check_data_dir(settings)  # workspaces live there, whatever the database
    # Bound first: with the port taken, nothing else (database, workers) starts.
    where = f"{settings.host}:{settings.port}"
    try:
        sock = bind(settings.host, settings.port)
    except PortInUse as exc:
        raise click.ClickException(f"Cannot listen: {exc}.") from None
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {where}: {exc.strerror or exc}.") from None

    print_status(settings)

    async def bootstrap(conn: AsyncConnection) -> str | None:
        key = await users.create_first_user(
            conn, name=settings.default_user, max_live_keys=settings.max_keys_per_user
        )
        return key.secret if key is not None else None

    try:
        first_key = run_in_db(settings, bootstrap, hint=False)
    except BaseException:
        sock.close()
        raise
    if first_key:
        click.echo(
            f"First start: created user {settings.default_user!r} with this API key "
            "(shown only once; store it now):"
        )
        click.echo(first_key)
    base = settings.resolved_public_base_url()

    many = f", {processes} HTTP worker processes" if processes > 1 else ""

    def listening() -> None:
        click.echo(
            f"openjules listening on http://{where} "
            f"(API base {base}/v1alpha, database {describe_database(settings)}{many})"
        )
        click.echo(f"web app: {base}/ (sign in with an API key)")

    if processes == 1:
        try:
            asyncio.run(serve_forever(settings, sock=sock, on_listening=listening))
        except RunnerUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        end_process(settings)
        return
    try:
        serve_in_processes(settings, sock=sock, processes=processes, on_listening=listening)
    except HttpWorkersFailed as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        sock.close()
