"""``remote pull``: a session's patch on stdout (for ``| git apply``), or applied to the
current checkout, which must be clean, all or nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from openjules.cli.remote_checkout import (
    apply_patch,
    checkout_root,
    dirty_paths,
    files_of,
    head_commit,
    why_patch_does_not_apply,
)
from openjules.cli.remote_errors import ExitCode, RemoteCommand, fail, open_client
from openjules.cli.remote_output import note

# How many of a dirty tree's paths a refusal names.
SHOWN_PATHS = 5
SHORT_COMMIT = 12


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOWN_PATHS])
    return shown + (f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else "")


@click.command(cls=RemoteCommand)
@click.option("--session", "session_id", required=True, metavar="ID", help="The session.")
@click.option(
    "--apply",
    "apply_it",
    is_flag=True,
    help="Apply the patch to the current checkout (refused when its tree is not clean or "
    "the patch does not apply; nothing is changed then).",
)
@click.pass_context
def pull(ctx: click.Context, *, session_id: str, apply_it: bool) -> None:
    """Print the patch of session ID exactly as the server holds it (nothing else goes to
    stdout), or apply it to the current checkout with --apply. A session that has not
    ended yet gives the work so far.

    \b
    Examples:
      openjules remote pull --session 1234567890123456789 > fix.patch
      openjules remote pull --session 1234567890123456789 | git apply
      openjules remote pull --session 1234567890123456789 --apply
    """
    client = open_client(ctx)
    patch = client.patch(session_id)
    if patch is None or not patch.unidiff_patch:
        fail(f"Session {session_id} has no patch: it has changed nothing.", code=ExitCode.NO_PATCH)
    text = patch.unidiff_patch
    if not apply_it:
        # Bytes, as the server holds them: no newline added, no encoding of the locale's.
        sys.stdout.buffer.write(text.encode())
        sys.stdout.buffer.flush()
        return
    root = checkout_root(Path.cwd())
    dirty = dirty_paths(root)
    if dirty:
        fail(
            f"The checkout at {root} has changes of its own ({_listing(dirty)}): commit or "
            "stash them, then pull again. Nothing was changed.",
            code=ExitCode.REFUSED,
        )
    why = why_patch_does_not_apply(root, text)
    if why is not None:
        head = head_commit(root)
        base = patch.base_commit_id
        where = (
            f" (it was made on {base[:SHORT_COMMIT]}, the checkout is at {head[:SHORT_COMMIT]})"
            if base and head and base != head
            else ""
        )
        fail(
            f"The patch of session {session_id} does not apply to {root}{where}: {why}. "
            "Nothing was changed.",
            code=ExitCode.REFUSED,
        )
    files = files_of(root, text)
    apply_patch(root, text)
    count = "1 file" if len(files) == 1 else f"{len(files)} files"
    note(f"Applied the patch of session {session_id} to {root} ({count}):")
    for change in files:
        note(f"  {change.path} (+{change.added} -{change.removed})")
