"""A git patch split into its files, each with its added and removed line counts, for
the diff viewer (which shows each file's part; JavaScript adds syntax highlighting)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIFF_HEADER = re.compile(r'^diff --git ("?a/.+?"?) ("?b/.+?"?)$')
# git's C escapes in a quoted path; a non-ASCII character is its UTF-8 bytes in octal.
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_OCTAL = re.compile(r"[0-7]{1,3}")


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


def unquote(name: str) -> str:
    """A path as git prints it: in double quotes with C escapes when it holds a quote, a
    backslash, a control or a non-ASCII character (``"caf\\303\\251.txt"``); else as is."""
    if len(name) < 2 or name[0] != '"' or name[-1] != '"':
        return name
    body, raw, i = name[1:-1], bytearray(), 0
    while i < len(body):
        octal = _OCTAL.match(body, i + 1) if body[i] == "\\" else None
        if octal:
            raw.append(int(octal.group(), 8) & 0xFF)
            i = octal.end()
        elif body[i] == "\\" and i + 1 < len(body):
            escaped = body[i + 1]
            raw += bytes([_ESCAPES[escaped]]) if escaped in _ESCAPES else escaped.encode()
            i += 2
        else:
            raw += body[i].encode()
            i += 1
    return raw.decode("utf-8", errors="replace")


def _name(token: str) -> str:
    """``a/PATH`` or ``b/PATH``, quoted or not, as PATH."""
    name = unquote(token)
    return name[2:] if name[:2] in ("a/", "b/") else name


def _path_of(line: str, prefix: str) -> str | None:
    name = line[len(prefix) :].strip()
    if name == "/dev/null":
        return None
    return _name(name)


def _file(chunk: list[str]) -> FileDiff:
    header = _DIFF_HEADER.match(chunk[0])
    old = new = _name(header.group(2)) if header else ""
    old_path = _name(header.group(1)) if header else ""
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
                status, old_path = "renamed", unquote(line[len("rename from ") :].strip())
            elif line.startswith("rename to "):
                new = unquote(line[len("rename to ") :].strip())
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
