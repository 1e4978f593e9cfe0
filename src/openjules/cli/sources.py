"""``openjules sources``: register git repositories as Jules sources."""

from __future__ import annotations

from dataclasses import replace
from typing import TextIO

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import InvalidArgument
from openjules.cli.context import database_options, run_in_db
from openjules.engine import git
from openjules.engine.repository import describe_repository
from openjules.settings import Settings
from openjules.store import sources as source_store
from openjules.store.sources import SourceRecord


def _read(location: str, *, owner: str, repo: str, is_private: bool) -> SourceRecord:
    try:
        return describe_repository(location, owner=owner, repo=repo, is_private=is_private)
    except git.GitError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def sources() -> None:
    """Register and inspect sources (git repositories sessions work on)."""


@sources.command("add")
@click.argument("location", metavar="PATH_OR_URL")
@click.option(
    "--name",
    default=None,
    metavar="OWNER/REPO",
    help="Exposed as sources/github/OWNER/REPO [default local/<directory name>].",
)
@click.option("--private", "is_private", is_flag=True, help="Mark the repository private.")
@click.option(
    "--setup-script",
    type=click.File("r"),
    default=None,
    help="Shell script run in the sandbox before the agent works (e.g. installs dependencies).",
)
@click.option(
    "--allow-network",
    is_flag=True,
    help="Let agent commands for this source use the network (off by default).",
)
@database_options
def add(
    location: str,
    name: str | None,
    is_private: bool,
    setup_script: TextIO | None,
    allow_network: bool,
    *,
    settings: Settings,
) -> None:
    """Add (or update) a source from a local path or any git URL."""
    try:
        location = git.normalize_location(location)
    except git.GitError as exc:
        raise click.ClickException(str(exc)) from exc
    if name:
        owner, _, repo = name.partition("/")
        if not repo or "/" in repo:
            raise click.BadParameter("expected OWNER/REPO", param_hint="--name")
    else:
        owner, repo = git.default_source_name(location)
    try:
        source_store.validate_owner_repo(owner, repo)
    except InvalidArgument as exc:
        raise click.ClickException(exc.message) from exc
    record = replace(
        _read(location, owner=owner, repo=repo, is_private=is_private),
        setup_script=setup_script.read() if setup_script else None,
        network_allowed=allow_network,
    )

    async def action(conn: AsyncConnection) -> SourceRecord:
        return await source_store.upsert(conn, record=record)

    run_in_db(settings, action)
    click.echo(
        f"Added {record.name} ({location}): default branch {record.default_branch}, "
        f"{len(record.branches)} branch(es)."
    )


@sources.command("list")
@database_options
def list_(*, settings: Settings) -> None:
    """List sources."""

    async def action(conn: AsyncConnection) -> list[SourceRecord]:
        return await source_store.all_records(conn)

    records = run_in_db(settings, action)
    if not records:
        click.echo("No sources. Add one with `openjules sources add PATH_OR_URL`.")
        return
    for r in records:
        click.echo(f"{r.name}\t{r.default_branch}\t{len(r.branches)} branches\t{r.url}")


@sources.command("refresh")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@database_options
def refresh(names: tuple[str, ...], *, settings: Settings) -> None:
    """Re-read branches of the given sources (default: all) from their repositories."""

    async def load(conn: AsyncConnection) -> list[SourceRecord]:
        return await source_store.all_records(conn)

    records = run_in_db(settings, load)
    wanted = {n if n.startswith("sources/") else f"sources/github/{n}" for n in names}
    unknown = wanted - {r.name for r in records}
    if unknown:
        raise click.ClickException(f"Unknown source(s): {', '.join(sorted(unknown))}")
    chosen = [r for r in records if not wanted or r.name in wanted]
    fresh = [
        replace(
            _read(r.url, owner=r.owner, repo=r.repo, is_private=r.is_private),
            setup_script=r.setup_script,
            network_allowed=r.network_allowed,
        )
        for r in chosen
    ]

    async def save(conn: AsyncConnection) -> None:
        for record in fresh:
            await source_store.upsert(conn, record=record)

    run_in_db(settings, save)
    for r in fresh:
        click.echo(
            f"Refreshed {r.name}: default branch {r.default_branch}, {len(r.branches)} branch(es)."
        )


@sources.command("configure")
@click.argument("name")
@click.option(
    "--setup-script",
    type=click.File("r"),
    default=None,
    help="Replace the setup script with this file's contents.",
)
@click.option("--clear-setup-script", is_flag=True, help="Remove the setup script.")
@click.option(
    "--network/--no-network",
    default=None,
    help="Allow or forbid network access for agent commands.",
)
@database_options
def configure(
    name: str,
    setup_script: TextIO | None,
    clear_setup_script: bool,
    network: bool | None,
    *,
    settings: Settings,
) -> None:
    """Change how sessions of source NAME (OWNER/REPO or sources/github/OWNER/REPO) run."""
    full = name if name.startswith("sources/") else f"sources/github/{name}"

    async def action(conn: AsyncConnection) -> SourceRecord:
        record = await source_store.get(conn, name=full)
        if setup_script is not None:
            record = replace(record, setup_script=setup_script.read())
        if clear_setup_script:
            record = replace(record, setup_script=None)
        if network is not None:
            record = replace(record, network_allowed=network)
        return await source_store.upsert(conn, record=record)

    record = run_in_db(settings, action)
    script = "a setup script" if record.setup_script else "no setup script"
    access = "network allowed" if record.network_allowed else "no network"
    click.echo(f"Configured {record.name}: {script}, {access}.")
