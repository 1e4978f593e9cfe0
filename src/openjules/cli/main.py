"""Entry point of the ``openjules`` command."""

from __future__ import annotations

import importlib
from typing import Any

import click

from openjules import __version__

# name -> (module, attribute): each command is imported only when it runs (or --help lists
# it), so `openjules remote …` does not pay for the server's imports (SQLAlchemy, FastAPI,
# the engine): about a third of the CPU per run.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("openjules.cli.serve", "serve"),
    "keys": ("openjules.cli.keys", "keys"),
    "sources": ("openjules.cli.sources", "sources"),
    "worker": ("openjules.cli.worker", "worker"),
    "backup": ("openjules.cli.backup", "backup"),
    "restore": ("openjules.cli.backup", "restore"),
    "login": ("openjules.cli.remote", "login"),
    "logout": ("openjules.cli.remote", "logout"),
    "remote": ("openjules.cli.remote", "remote"),
    "mcp": ("openjules.cli.mcp", "mcp"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute = found
        command: Any = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="openjules")
def cli() -> None:
    """openjules: a self-hostable server for the Jules REST API (v1alpha)."""


def main() -> None:
    cli()
