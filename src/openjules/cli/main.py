"""Entry point of the ``openjules`` command."""

from __future__ import annotations

import click

from openjules import __version__
from openjules.cli.backup import backup, restore
from openjules.cli.keys import keys
from openjules.cli.mcp import mcp
from openjules.cli.remote import login, logout, remote
from openjules.cli.serve import serve
from openjules.cli.sources import sources
from openjules.cli.worker import worker


@click.group()
@click.version_option(__version__, prog_name="openjules")
def cli() -> None:
    """openjules: a self-hostable server for the Jules REST API (v1alpha)."""


cli.add_command(serve)
cli.add_command(keys)
cli.add_command(sources)
cli.add_command(worker)
cli.add_command(backup)
cli.add_command(restore)
cli.add_command(login)
cli.add_command(logout)
cli.add_command(remote)
cli.add_command(mcp)


def main() -> None:
    cli()
