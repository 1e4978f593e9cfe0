"""``openjules login``, ``logout`` and ``remote …``: a user's command line over the SDK,
modelled on Jules Tools' ``jules remote`` commands.

The commands live in ``remote_*`` modules by noun; this one assembles the group.
"""

from __future__ import annotations

import click

from openjules.cli.remote_errors import RemoteGroup, exit_codes_help
from openjules.cli.remote_login import login, logout
from openjules.cli.remote_pull import pull
from openjules.cli.remote_sessions import approve, cancel, list_, message, new, pause, resume
from openjules.cli.remote_watch import watch

__all__ = ["login", "logout", "remote"]

REMOTE_HELP = f"""Work with sessions on an openjules (or Jules) server.

The server and key come from OPENJULES_URL and JULES_API_KEY, else from `openjules login`.
Data (ids, tables, JSON, patches) goes to stdout; messages go to stderr.

\b
Examples:
  openjules remote new --repo . --session "Add a --verbose flag"
  openjules remote watch 1234567890123456789
  openjules remote pull --session 1234567890123456789 --apply

{exit_codes_help()}
"""


@click.group(cls=RemoteGroup, help=REMOTE_HELP)
def remote() -> None:
    pass


for command in (new, list_, watch, approve, message, pause, resume, cancel, pull):
    remote.add_command(command)
