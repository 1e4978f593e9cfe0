"""What ``openjules serve`` and ``openjules worker`` say before they start: the model
sessions use (never its key) and the sandbox agent commands run in."""

from __future__ import annotations

import asyncio

import click

from openjules.engine.model import describe_model
from openjules.engine.sandbox import describe_sandbox
from openjules.settings import Settings


def print_status(settings: Settings) -> None:
    """One line for the model, one for the sandbox; a sandbox that does not work here is
    reported on stderr (sessions fail until it is fixed; the process still starts)."""
    click.echo(describe_model(settings))
    sandbox = asyncio.run(describe_sandbox(settings))
    click.echo(sandbox.line, err=not sandbox.ok)
