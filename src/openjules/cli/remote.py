"""``openjules login``, ``logout`` and ``remote …``: a user's command line over the SDK."""

from __future__ import annotations

import click


@click.command()
def login() -> None:
    """Store the server URL and API key for the commands below."""
    raise click.ClickException("not yet")


@click.command()
def logout() -> None:
    """Forget the stored server URL and API key."""
    raise click.ClickException("not yet")


@click.group()
def remote() -> None:
    """Work with sessions on an openjules (or Jules) server."""
