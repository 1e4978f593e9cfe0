"""What ``openjules serve`` and ``openjules worker`` say before they start: the model
sessions use (never its key), the sandbox agent commands run in, and who runs sessions
when that is not this process's own lease queue (the Temporal runner)."""

from __future__ import annotations

import asyncio

import click

from openjules.engine.model import describe_model
from openjules.engine.sandbox import describe_sandbox
from openjules.settings import RunnerKind, Settings


def describe_runner(settings: Settings) -> str | None:
    """Where sessions are handed to, for the Temporal runner (None for the local one)."""
    if settings.runner is not RunnerKind.TEMPORAL:
        return None
    return (
        f"runner: Temporal at {settings.temporal_address}, namespace "
        f"{settings.temporal_namespace}, task queue {settings.temporal_task_queue}"
    )


def print_status(settings: Settings) -> None:
    """One line for the model, one for the sandbox (and one for a Temporal runner); a
    sandbox that does not work here is reported on stderr (sessions fail until it is
    fixed; the process still starts)."""
    click.echo(describe_model(settings))
    sandbox = asyncio.run(describe_sandbox(settings))
    click.echo(sandbox.line, err=not sandbox.ok)
    runner = describe_runner(settings)
    if runner is not None:
        click.echo(runner)
