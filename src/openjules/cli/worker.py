"""``openjules worker``: run sessions from the shared database, without the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from openjules.cli.context import check_data_dir, database_options, database_work
from openjules.settings import Settings


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Sessions run at once [env OPENJULES_MAX_CONCURRENT_SESSIONS; default 200]; "
        "sandbox commands have their own limit (OPENJULES_MAX_CONCURRENT_COMMANDS)."
    ),
)
@database_options
def worker(concurrency: int | None, *, settings: Settings) -> None:
    """Run agent sessions queued in the database and deliver webhook events (several
    workers may share PostgreSQL)."""
    # Imported here: the engine costs start-up time every other command avoids.
    from openjules.cli.status import print_status
    from openjules.engine.service import EngineService
    from openjules.server import keep_out_of_collections
    from openjules.store.migrate import upgrade_to_head

    check_data_dir(settings)  # workspaces live there, whatever the database
    workers = concurrency if concurrency is not None else max(settings.sessions_at_once(), 1)
    print_status(settings)
    with database_work(settings):
        upgrade_to_head(settings.resolved_database_url())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with EngineService(settings=settings, workers=workers) as engine:
            keep_out_of_collections()
            click.echo(
                f"openjules worker {engine.runner.identity}: {workers} concurrent session(s)"
            )
            await stop.wait()
        click.echo("worker stopped; unfinished sessions are resumed by the next worker")

    from openjules.cli.process_exit import end_process
    from openjules.engine.runner import RunnerUnavailable

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except RunnerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    end_process(settings)
