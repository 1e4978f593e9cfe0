"""How the ``remote`` commands print: data (ids, tables, JSON, patches) on stdout, what a
person reads about it (confirmations, hints) on stderr, so stdout pipes into scripts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from openjules._timestamps import parse_timestamp_ns
from openjules._types import Session, Source
from openjules.cli.remote_errors import ExitCode, fail

GITHUB_SOURCES = "sources/github/"
# A table's longest cell (titles); the rest of it is cut with an ellipsis.
MAX_CELL = 60


def note(message: str) -> None:
    """A line for the person at the terminal (stderr)."""
    click.echo(message, err=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def text_or_stdin(value: str, *, what: str) -> str:
    """``value``, or all of stdin when it is ``-``; never empty."""
    text = sys.stdin.read() if value == "-" else value
    if not text.strip():
        fail(f"The {what} is empty.", code=ExitCode.USAGE)
    return text


def repository(source_name: str) -> str:
    """``sources/github/OWNER/REPO`` → ``OWNER/REPO``."""
    return source_name.removeprefix(GITHUB_SOURCES)


def source_repository(source: Source) -> str:
    repo = source.github_repo
    if repo is not None and repo.owner and repo.repo:
        return f"{repo.owner}/{repo.repo}"
    return repository(source.name)


def age(timestamp: str) -> str:
    """How long ago, in the largest whole unit: ``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    try:
        then = parse_timestamp_ns(timestamp) / 1e9
    except ValueError:
        return "-"
    seconds = max(0, int(time.time() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _cut(cell: str) -> str:
    cell = " ".join(cell.split())
    return cell if len(cell) <= MAX_CELL else cell[: MAX_CELL - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on their widest cell, the last one left ragged."""
    cells = [[_cut(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def sessions_table(sessions: Sequence[Session]) -> str:
    rows = []
    for s in sessions:
        source = repository(s.source_context.source) if s.source_context else "-"
        rows.append([s.id, s.state.value, age(s.update_time), source, s.title or "(untitled)"])
    return table(["ID", "STATE", "UPDATED", "SOURCE", "TITLE"], rows)


def sources_table(sources: Sequence[Source]) -> str:
    rows = []
    for s in sources:
        repo = s.github_repo
        default = repo.default_branch.display_name if repo and repo.default_branch else "-"
        branches = len(repo.branches) if repo else 0
        visibility = "private" if repo and repo.is_private else "public"
        rows.append([source_repository(s), default, str(branches), visibility])
    return table(["SOURCE", "DEFAULT BRANCH", "BRANCHES", "VISIBILITY"], rows)
