"""File tools: read, write, edit, list and search the session's work tree.

Read, write, edit and list run host-side, in the server process (often as root), on a tree
the agent controls: it can plant symbolic links, FIFOs and hard links there with the shell
tool. So every path goes through ``resolve_in_tree``, which follows every symbolic link and
refuses anything that lands outside the tree, and files are opened with ``O_NOFOLLOW`` and
checked to be plain files before a byte is read or written. Tools run one at a time and
bubblewrap's PID namespace dies with each command, so nothing the agent started can swap a
link between the check and the open (the unsandboxed development backend gives no such
guarantee).

Search runs ``grep`` inside the sandbox instead: a regular expression over a whole tree is
work better kept out of the server.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pydantic import Field

from openjules.engine.sandbox.disk import no_room
from openjules.engine.tools.base import Phase, Tool, ToolArgs, ToolContext, ToolResult, error

MAX_WRITE_BYTES = 5 * 1024 * 1024
MAX_LIST_ENTRIES = 500
MAX_SEARCH_LINES = 200
MAX_SEARCH_LINE_CHARS = 300


class PathError(ValueError):
    """A path the tools refuse; the message is meant for the model."""


def resolve_in_tree(tree: Path, raw: str, *, must_exist: bool) -> Path:
    """The real path of ``raw`` (relative to the repository root) inside ``tree``.

    Every symbolic link is followed, a linked parent directory included, and the result
    must still be inside the real path of ``tree``; otherwise ``PathError``. The returned
    path has no symbolic link left in it (at the time of the check).
    """
    if not raw.strip():
        raise PathError("the path is empty; use '.' for the repository root")
    if "\0" in raw:
        raise PathError("the path contains a NUL byte")
    if posixpath.isabs(raw):
        raise PathError(f"{raw} is absolute; paths are relative to the repository root")
    if ".." in raw.split("/"):
        raise PathError(f"{raw} contains '..'; paths must stay inside the repository")
    root = os.path.realpath(tree)
    resolved = os.path.realpath(os.path.join(root, raw))
    if os.path.commonpath([root, resolved]) != root:
        # Do not say where the link points: that is outside information.
        raise PathError(f"{raw} leads outside the repository through a symbolic link")
    if must_exist and not os.path.exists(resolved):
        raise PathError(f"{raw} does not exist")
    return Path(resolved)


def _tree_root(ctx: ToolContext) -> Path:
    return Path(os.path.realpath(ctx.workspace.tree))


def _refuse_git_dir(root: Path, resolved: Path, raw: str) -> None:
    """Writes into a ``.git`` directory are refused: git state changes go through git."""
    parts = [*raw.split("/"), *resolved.relative_to(root).parts]
    if any(part.lower() == ".git" for part in parts):
        raise PathError(f"{raw} is inside .git; change repository state with git commands")


def _open_regular(path: Path, flags: int) -> IO[bytes]:
    """Open a plain file without following a symbolic link in the last component.

    ``O_NONBLOCK`` keeps a FIFO planted by the agent from hanging the server; it changes
    nothing for a regular file. A hard link could alias a file elsewhere on the host.
    """
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PathError(f"{path.name} is not a regular file")
        if info.st_nlink > 1:
            raise PathError(f"{path.name} has several hard links; refusing to touch it")
        mode = "rb" if flags & os.O_ACCMODE == os.O_RDONLY else "r+b"
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def _adopt_owner(path: Path) -> None:
    """Give a file or directory the server just created its parent's owner.

    A root server hands the tree to the sandbox uid; a root-owned file in it would be one
    the agent's commands could not change.
    """
    if os.geteuid() != 0:
        return
    parent = os.stat(path.parent)
    os.chown(path, parent.st_uid, parent.st_gid, follow_symlinks=False)


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents (it comes from ``resolve_in_tree``, so
    the part that exists is real and inside the tree)."""
    missing: list[Path] = []
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        os.mkdir(new, 0o755)
        _adopt_owner(new)


def _os_error(verb: str, raw: str, exc: OSError) -> ToolResult:
    return error(f"could not {verb} {raw}: {exc.strerror or exc}")


# --- read_file ------------------------------------------------------------------------


class ReadFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the repository root.")
    start_line: int | None = Field(
        default=None, ge=1, description="First line to show (1-based). Default: 1."
    )
    end_line: int | None = Field(
        default=None, ge=1, description="Last line to show (1-based, inclusive). Default: end."
    )


def _lines(stream: IO[bytes], limit: int) -> Iterator[bytes]:
    """Yield lines cut to ``limit`` bytes, never holding a longer one in memory (a
    minified file can be one line of many megabytes)."""
    while line := stream.readline(limit):
        if len(line) == limit and not line.endswith(b"\n"):
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        yield line


def _numbered(stream: IO[bytes], raw: str, start: int, end: int | None, budget: int) -> str:
    shown: list[str] = []
    used = 0
    number = 0
    for number, line in enumerate(_lines(stream, budget + 1), start=1):
        if b"\0" in line:
            return f"{raw} is a binary file; its content is not shown."
        if number < start:
            continue
        if end is not None and number > end:
            break
        text = f"{number:>5}| {line.decode(errors='replace').rstrip(chr(13) + chr(10))}\n"
        if used + len(text) > budget:
            if not shown:  # one line longer than the whole budget: show its start
                return (
                    f"{text[:budget]}\n[... line {number} is cut at {budget} characters; "
                    "use search or shell to see the rest of it]"
                )
            return "".join(shown) + (
                f"[... truncated at {budget} characters; lines {start}-{number - 1} shown. "
                f"Read on with start_line={number}.]"
            )
        shown.append(text)
        used += len(text)
    if not shown:
        if number == 0:
            return f"{raw} is empty."
        raise PathError(f"start_line {start} is past the end of {raw} ({number} lines)")
    return "".join(shown)


class ReadFile(Tool):
    name = "read_file"
    description = (
        "Read a text file of the repository, with line numbers ('   12| text'). Long "
        "files are truncated; read further parts with start_line and end_line."
    )
    Args = ReadFileArgs
    phases = frozenset({Phase.PLANNING, Phase.WORK})

    async def run(self, ctx: ToolContext, args: ReadFileArgs) -> ToolResult:
        return await asyncio.to_thread(self._read, ctx, args)

    def _read(self, ctx: ToolContext, args: ReadFileArgs) -> ToolResult:
        start = args.start_line or 1
        if args.end_line is not None and args.end_line < start:
            return error(f"end_line {args.end_line} is before start_line {start}")
        try:
            path = resolve_in_tree(ctx.workspace.tree, args.path, must_exist=True)
            if path.is_dir():
                return error(f"{args.path} is a directory; use list_files to see what it holds")
            with _open_regular(path, os.O_RDONLY) as stream:
                text = _numbered(stream, args.path, start, args.end_line, ctx.max_read_chars)
        except PathError as exc:
            return error(str(exc))
        except OSError as exc:
            return _os_error("read", args.path, exc)
        return ToolResult(content=text)


# --- write_file -----------------------------------------------------------------------


class WriteFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the repository root.")
    content: str = Field(description="The complete new content of the file.")


class WriteFile(Tool):
    name = "write_file"
    description = (
        "Create a file or replace its whole content. Missing parent directories are "
        "created. To change part of an existing file, prefer edit_file."
    )
    Args = WriteFileArgs
    phases = frozenset({Phase.WORK})

    async def run(self, ctx: ToolContext, args: WriteFileArgs) -> ToolResult:
        return await asyncio.to_thread(self._write, ctx, args)

    def _write(self, ctx: ToolContext, args: WriteFileArgs) -> ToolResult:
        data = args.content.encode()
        if len(data) > MAX_WRITE_BYTES:
            return error(
                f"content is {len(data)} bytes; write_file takes at most {MAX_WRITE_BYTES}"
            )
        root = _tree_root(ctx)
        try:
            path = resolve_in_tree(root, args.path, must_exist=False)
            _refuse_git_dir(root, path, args.path)
            if path.is_dir():
                return error(f"{args.path} is a directory")
            problem = _no_room(ctx, root, growth=len(data) - _size(path))
            if problem:
                return error(problem)
            _make_dirs(path.parent)
            created = not os.path.lexists(path)
            with _open_regular(path, os.O_RDWR | os.O_CREAT) as stream:
                if created:
                    _adopt_owner(path)
                stream.write(data)
                stream.truncate()
        except PathError as exc:
            return error(str(exc))
        except OSError as exc:
            return _os_error("write", args.path, exc)
        return ToolResult(
            content=f"Wrote {len(data)} bytes to {args.path}",
            mutated=True,
            changed_paths=(str(path.relative_to(root)),),
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _no_room(ctx: ToolContext, root: Path, *, growth: int) -> str | None:
    """Why the tree cannot grow by ``growth`` bytes (its workspace limit), or None."""
    if growth <= 0:
        return None
    room = ctx.sandbox.workspace_room(root)
    return no_room(limit_bytes=ctx.sandbox.limits.workspace_bytes, room_bytes=room, growth=growth)


# --- edit_file ------------------------------------------------------------------------


class EditFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the repository root.")
    old_text: str = Field(
        description=(
            "The exact text to replace, whitespace and indentation included. It must "
            "occur exactly once unless replace_all is true; include surrounding lines to "
            "make it unique."
        )
    )
    new_text: str = Field(description="The text to put in its place.")
    replace_all: bool = Field(
        default=False, description="Replace every occurrence instead of exactly one."
    )


class EditFile(Tool):
    name = "edit_file"
    description = (
        "Replace text in an existing file: old_text must match the file exactly and, "
        "unless replace_all is set, occur exactly once."
    )
    Args = EditFileArgs
    phases = frozenset({Phase.WORK})

    async def run(self, ctx: ToolContext, args: EditFileArgs) -> ToolResult:
        return await asyncio.to_thread(self._edit, ctx, args)

    def _edit(self, ctx: ToolContext, args: EditFileArgs) -> ToolResult:
        if not args.old_text:
            return error("old_text is empty; to create or overwrite a file use write_file")
        # Bytes, not text: the rest of the file is kept byte for byte, whatever its encoding.
        old, new = args.old_text.encode(), args.new_text.encode()
        root = _tree_root(ctx)
        try:
            path = resolve_in_tree(root, args.path, must_exist=True)
            _refuse_git_dir(root, path, args.path)
            if path.is_dir():
                return error(f"{args.path} is a directory")
            with _open_regular(path, os.O_RDWR) as stream:
                data = stream.read(MAX_WRITE_BYTES + 1)
                if len(data) > MAX_WRITE_BYTES:
                    return error(f"{args.path} is larger than {MAX_WRITE_BYTES} bytes")
                if b"\0" in data:
                    return error(f"{args.path} is a binary file")
                count = data.count(old)
                if count == 0:
                    return error(
                        f"old_text occurs 0 times in {args.path}. It must match exactly, "
                        "whitespace and indentation included: read the file again and copy "
                        "the text with a few lines of context."
                    )
                if count > 1 and not args.replace_all:
                    return error(
                        f"old_text occurs {count} times in {args.path}. Include more "
                        "surrounding context so it matches exactly once, or set replace_all."
                    )
                updated = data.replace(old, new, -1 if args.replace_all else 1)
                if len(updated) > MAX_WRITE_BYTES:
                    return error(f"the edited file would exceed {MAX_WRITE_BYTES} bytes")
                problem = _no_room(ctx, root, growth=len(updated) - len(data))
                if problem:
                    return error(problem)
                stream.seek(0)
                stream.write(updated)
                stream.truncate()
        except PathError as exc:
            return error(str(exc))
        except OSError as exc:
            return _os_error("edit", args.path, exc)
        replaced = count if args.replace_all else 1
        plural = "s" if replaced > 1 else ""
        return ToolResult(
            content=f"Replaced {replaced} occurrence{plural} in {args.path}",
            mutated=True,
            changed_paths=(str(path.relative_to(root)),),
        )


# --- list_files -----------------------------------------------------------------------


class ListFilesArgs(ToolArgs):
    path: str = Field(
        default=".", description="Directory relative to the repository root. Default: root."
    )


class ListFiles(Tool):
    name = "list_files"
    description = (
        "List the files under a directory of the repository (recursively, .git skipped), "
        f"as paths relative to the repository root; at most {MAX_LIST_ENTRIES} entries."
    )
    Args = ListFilesArgs
    phases = frozenset({Phase.PLANNING, Phase.WORK})

    async def run(self, ctx: ToolContext, args: ListFilesArgs) -> ToolResult:
        return await asyncio.to_thread(self._list, ctx, args)

    def _list(self, ctx: ToolContext, args: ListFilesArgs) -> ToolResult:
        root = _tree_root(ctx)
        try:
            top = resolve_in_tree(root, args.path, must_exist=True)
        except PathError as exc:
            return error(str(exc))
        if not top.is_dir():
            return error(f"{args.path} is not a directory; use read_file for a file")
        entries: list[str] = []
        for directory, dirnames, filenames in os.walk(top, followlinks=False):
            descend: list[str] = []
            for name in sorted(dirnames):  # sorted: the cap keeps the same entries each time
                if name == ".git":
                    continue
                if os.path.islink(os.path.join(directory, name)):
                    # A linked directory is listed by name; its content may be elsewhere.
                    entries.append(os.path.relpath(os.path.join(directory, name), root))
                else:
                    descend.append(name)
            dirnames[:] = descend
            entries += [
                os.path.relpath(os.path.join(directory, name), root)
                for name in sorted(filenames)
                if name != ".git"  # a submodule's gitlink file
            ]
            if len(entries) > MAX_LIST_ENTRIES:
                break
        if not entries:
            return ToolResult(content=f"No files under {args.path}.")
        shown = sorted(entries)[:MAX_LIST_ENTRIES]
        text = "\n".join(shown)
        if len(entries) > MAX_LIST_ENTRIES:
            text += (
                f"\n[... listing stopped at {MAX_LIST_ENTRIES} entries; list a subdirectory "
                "or use search to see more]"
            )
        return ToolResult(content=text)


# --- search ---------------------------------------------------------------------------


class SearchArgs(ToolArgs):
    pattern: str = Field(
        description=(
            "An extended regular expression (grep -E syntax: use [0-9] rather than \\d, "
            "no lookarounds)."
        )
    )
    path: str = Field(
        default=".", description="File or directory to search, relative to the repository root."
    )
    glob: str | None = Field(
        default=None, description="Only search files whose name matches this glob, e.g. '*.py'."
    )


class Search(Tool):
    name = "search"
    description = (
        "Search file contents with a regular expression (grep -rE). Returns matching lines "
        "as 'path:line:text'. Binary files and .git are skipped."
    )
    Args = SearchArgs
    phases = frozenset({Phase.PLANNING, Phase.WORK})

    async def run(self, ctx: ToolContext, args: SearchArgs) -> ToolResult:
        if "\0" in args.pattern or (args.glob and "\0" in args.glob):
            return error("the pattern contains a NUL byte")
        root = _tree_root(ctx)
        try:
            # grep -r follows a link named on the command line, so name the real path.
            target = resolve_in_tree(root, args.path, must_exist=True)
        except PathError as exc:
            return error(str(exc))
        command = ["grep", "-rnHIE", "--color=never", "--exclude-dir=.git"]
        if args.glob:
            command.append(f"--include={args.glob}")
        command += ["-e", args.pattern, "--", target.relative_to(root).as_posix()]
        # shlex.join quotes every word; a search needs neither writes nor the network.
        result = await ctx.sandbox.run(
            shlex.join(command), workspace=ctx.workspace.tree, network=False, read_only=True
        )
        if result.timed_out:
            return error("the search timed out; narrow it with path or glob")
        if result.exit_code == 1:
            return ToolResult(content="No matches.")
        lines = result.output.splitlines()
        messages = [line for line in lines if line.startswith("grep: ")]
        matches = [line.removeprefix("./") for line in lines if not line.startswith("grep: ")]
        if result.exit_code != 0 and not matches:
            return error("grep failed: " + ("\n".join(messages) or result.output)[:2000])
        return ToolResult(content=_format_matches(matches, messages, cut=result.truncated))


def _format_matches(matches: list[str], messages: list[str], *, cut: bool) -> str:
    shown = [
        line if len(line) <= MAX_SEARCH_LINE_CHARS else line[:MAX_SEARCH_LINE_CHARS] + " [...]"
        for line in matches[:MAX_SEARCH_LINES]
    ]
    if len(matches) > MAX_SEARCH_LINES or cut:
        shown.append(
            f"[... more matches not shown (at most {MAX_SEARCH_LINES}); narrow the pattern, "
            "path or glob]"
        )
    if messages:
        shown.append("[grep reported: " + "; ".join(messages[:5]) + "]")
    return "\n".join(shown)
