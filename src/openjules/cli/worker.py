"""``openjules worker``: run sessions from the shared database, without the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from openjules.cli.context import database_options, describe_database
from openjules.settings import Settings


@click.command()
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="Sessions run at once [env OPENJULES_WORKERS; default 2].",
)
@database_options
def worker(concurrency: int | None, *, settings: Settings) -> None:
    """Run agent sessions queued in the database (several workers may share PostgreSQL)."""
    from openjules.engine.service import EngineService
    from openjules.store.migrate import upgrade_to_head

    workers = concurrency if concurrency is not None else max(settings.workers, 1)

    async def main() -> None:
        await asyncio.to_thread(upgrade_to_head, settings.resolved_database_url())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with EngineService(settings=settings, workers=workers) as engine:
            click.echo(
                f"openjules worker {engine.runner.identity}: {workers} concurrent session(s), "
                f"database {describe_database(settings)}"
            )
            await stop.wait()
        click.echo("worker stopped; unfinished sessions are resumed by the next worker")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
