"""A git patch split into its files, each with its added and removed line counts, for
the diff viewer (which shows each file's part; JavaScript adds syntax highlighting)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIFF_HEADER = re.compile(r"^diff --git (?:\"?a/(.+?)\"?) (?:\"?b/(.+?)\"?)$")


@dataclass(frozen=True)
class FileDiff:
    path: str
    old_path: str
    added: int
    removed: int
    text: str  # this file's part of the patch, header included
    status: str  # "added", "deleted", "renamed" or "modified"

    @property
    def anchor(self) -> str:
        """An id for the file's place on the page (paths may hold any character)."""
        return "file-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.path)


def _path_of(line: str, prefix: str) -> str | None:
    name = line[len(prefix) :].strip()
    if name == "/dev/null":
        return None
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1]
    return name[2:] if name[:2] in ("a/", "b/") else name


def _file(chunk: list[str]) -> FileDiff:
    header = _DIFF_HEADER.match(chunk[0])
    old = new = header.group(2) if header else ""
    old_path = header.group(1) if header else ""
    added = removed = 0
    status = "modified"
    in_hunks = False
    for line in chunk[1:]:
        if line.startswith("@@"):
            in_hunks = True
        elif not in_hunks:
            if line.startswith("new file mode"):
                status = "added"
            elif line.startswith("deleted file mode"):
                status = "deleted"
            elif line.startswith("rename from "):
                status, old_path = "renamed", line[len("rename from ") :]
            elif line.startswith("rename to "):
                new = line[len("rename to ") :]
            elif line.startswith("--- "):
                old_path = _path_of(line, "--- ") or old_path
            elif line.startswith("+++ "):
                new = _path_of(line, "+++ ") or old
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    path = new or old_path
    return FileDiff(
        path=path,
        old_path=old_path or path,
        added=added,
        removed=removed,
        text="".join(chunk),
        status=status,
    )


def split_patch(patch: str) -> list[FileDiff]:
    """The files of a ``git diff`` patch, in its order."""
    files: list[FileDiff] = []
    chunk: list[str] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git ") and chunk:
            files.append(_file(chunk))
            chunk = []
        if chunk or line.startswith("diff --git "):
            chunk.append(line)
    if chunk:
        files.append(_file(chunk))
    return files
