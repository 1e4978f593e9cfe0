"""``openjules sources``: register git repositories as Jules sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NoReturn, TextIO

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.cli.context import database_options, run_in_db
from openjules.engine import git
from openjules.engine.forge import catalog
from openjules.engine.forge.access import GitHubAccess
from openjules.engine.forge.github import GitHubClient, GitHubError
from openjules.engine.repository import (
    SourceError,
    owner_repo,
    read_source,
    reread_source,
)
from openjules.settings import Settings
from openjules.store import sources as source_store
from openjules.store.sources import Forge, SourceRecord


def _refuse(exc: SourceError) -> NoReturn:
    """A refusal as click reports it: a usage error (exit 2) when an argument is at fault."""
    if exc.option is not None:
        hint = exc.option if exc.option.startswith("--") else None
        raise click.BadParameter(exc.message, param_hint=hint) from exc
    raise click.ClickException(exc.message) from exc


@click.group()
def sources() -> None:
    """Register and inspect sources (git repositories sessions work on)."""


@sources.command("add")
@click.argument("location", metavar="PATH_OR_URL|github:OWNER/REPO")
@click.option(
    "--name",
    default=None,
    metavar="OWNER/REPO",
    help="Exposed as sources/github/OWNER/REPO [default local/<directory name>; not for github:].",
)
@click.option(
    "--private",
    "is_private",
    is_flag=True,
    help="Mark the repository private (github: sources take this from GitHub).",
)
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
    """Add (or update) a source from a local path, any git URL, or GitHub.

    With github:OWNER/REPO (or a URL of the configured GitHub, e.g.
    https://github.com/OWNER/REPO) the repository is read through GitHub's API with
    OPENJULES_GITHUB_TOKEN (OPENJULES_GITHUB_API_URL for GitHub Enterprise), and sessions
    with AUTO_CREATE_PR open pull requests on it.
    """
    try:
        owner, repo = owner_repo(name, hint="--name OWNER/REPO") if name else (None, None)
        read = read_source(settings, location, owner=owner, repo=repo, is_private=is_private)
    except SourceError as exc:
        _refuse(exc)
    record = replace(
        read,
        setup_script=setup_script.read() if setup_script else None,
        network_allowed=allow_network,
    )
    _save(settings, [record])
    click.echo(
        f"Added {record.name} ({git.redact_url(record.url)}): default branch "
        f"{record.default_branch}, {len(record.branches)} branch(es)."
    )


def _save(
    settings: Settings, records: Sequence[SourceRecord], *, remove: tuple[str, ...] = ()
) -> None:
    async def action(conn: AsyncConnection) -> None:
        for record in records:
            await source_store.upsert(conn, record=record)
        for name in remove:
            await source_store.delete(conn, name=name)

    run_in_db(settings, action)


@sources.command("sync")
@click.option(
    "--github",
    "from_github",
    is_flag=True,
    required=True,
    help="Register every repository OPENJULES_GITHUB_TOKEN can reach.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Also remove GitHub sources the token can no longer reach.",
)
@database_options
def sync(from_github: bool, prune: bool, *, settings: Settings) -> None:
    """Register repositories from a forge as sources (existing ones are updated)."""
    access = GitHubAccess.from_settings(settings)
    if not access.token:
        raise click.ClickException(
            "Set OPENJULES_GITHUB_TOKEN to a GitHub token first (and OPENJULES_GITHUB_API_URL "
            "for GitHub Enterprise, e.g. https://github.example.com/api/v3)."
        )
    found: list[SourceRecord] = []
    # Reachable but not usable now (empty, archived): not gone, so never pruned.
    skipped: set[str] = set()
    try:
        with GitHubClient(access) as client:
            for item in catalog.every_repository(client):
                if isinstance(item, catalog.Skipped):
                    skipped.add(f"sources/github/{item.full_name}")
                    click.echo(f"Skipped {item.full_name}: {item.reason}.")
                    continue
                found.append(item)
                click.echo(
                    f"Found {item.owner}/{item.repo}: default branch {item.default_branch}, "
                    f"{len(item.branches)} branch(es)."
                )
    except GitHubError as exc:
        raise click.ClickException(exc.message) from exc

    async def existing(conn: AsyncConnection) -> list[SourceRecord]:
        return await source_store.all_records(conn)

    known = {r.name: r for r in run_in_db(settings, existing)}
    # A re-sync keeps how each source's sessions run (setup script, network).
    merged = [r.keeping_settings_of(old) if (old := known.get(r.name)) else r for r in found]
    seen = {r.name for r in found} | skipped
    gone = tuple(sorted(n for n, r in known.items() if r.forge is Forge.GITHUB and n not in seen))
    _save(settings, merged, remove=gone if prune else ())
    summary = f"Synced {len(found)} repositories from GitHub ({len(skipped)} skipped)."
    if gone:
        summary += (
            f" Removed {len(gone)} that the token no longer reaches."
            if prune
            else f" {len(gone)} registered GitHub source(s) were not found; --prune removes them."
        )
    click.echo(summary)


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
        click.echo(
            f"{r.name}\t{r.default_branch}\t{len(r.branches)} branches\t{r.forge.value}\t"
            f"{git.redact_url(r.url)}"
        )


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
    try:
        fresh = [reread_source(settings, r) for r in chosen]
    except SourceError as exc:
        _refuse(exc)
    _save(settings, fresh)
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
