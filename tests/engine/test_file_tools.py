"""File tools: they read, write, edit, list and search the work tree, and nothing outside
it, whatever links, FIFOs or paths the agent plants or asks for."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from openjules.engine.sandbox import BubblewrapSandbox, Limits
from openjules.engine.tools.base import Phase, Tool, ToolContext, ToolResult
from openjules.engine.tools.files import (
    MAX_LIST_ENTRIES,
    MAX_WRITE_BYTES,
    EditFile,
    ListFiles,
    PathError,
    ReadFile,
    Search,
    WriteFile,
    resolve_in_tree,
)
from openjules.engine.workspace import create_empty
from tests.engine.agent_support import needs_bubblewrap

ALL_TOOLS: list[Tool] = [ReadFile(), WriteFile(), EditFile(), ListFiles(), Search()]
ESCAPES = ["../x", "/etc/passwd", "a/../../x", "a/../a/../../x", "./../x", ""]


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workspace, _ = create_empty(root=tmp_path / "ws")
    tree = workspace.tree
    (tree / "README.md").write_text("# Demo\nhello world\n")
    (tree / "src").mkdir()
    (tree / "src" / "app.py").write_text("def main():\n    print('hello')\n")
    return ToolContext(
        workspace=workspace,
        sandbox=BubblewrapSandbox(),
        network=False,
        phase=Phase.WORK,
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace that no tool may touch."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("TOP SECRET\n")
    return directory


async def call(tool: Tool, ctx: ToolContext, **raw: Any) -> ToolResult:
    return await tool.run(ctx, tool.parse(raw))


def tree(ctx: ToolContext) -> Path:
    return ctx.workspace.tree


# --- schemas and argument parsing ------------------------------------------------------


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=lambda t: t.name)
def test_schema_is_an_openai_function_tool(tool: Tool) -> None:
    schema = tool.schema()
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == tool.name
    assert function["description"]
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert "title" not in parameters
    required = set(parameters.get("required", []))
    assert required <= set(parameters["properties"])
    assert parameters["additionalProperties"] is False
    for field in parameters["properties"].values():
        assert field.get("description"), f"{tool.name}: every field is described"


def test_required_fields() -> None:
    def required(tool: Tool) -> set[str]:
        return set(tool.schema()["function"]["parameters"].get("required", []))

    assert required(ReadFile()) == {"path"}
    assert required(WriteFile()) == {"path", "content"}
    assert required(EditFile()) == {"path", "old_text", "new_text"}
    assert required(ListFiles()) == set()
    assert required(Search()) == {"pattern"}


@pytest.mark.parametrize("tool", [ReadFile(), WriteFile(), EditFile()], ids=lambda t: t.name)
def test_missing_path_is_a_value_error(tool: Tool) -> None:
    others = {"content": "x", "old_text": "a", "new_text": "b"}
    with pytest.raises(ValueError, match="path: Field required"):
        tool.parse({k: v for k, v in others.items() if k in tool.Args.model_fields})


@pytest.mark.parametrize("tool", ALL_TOOLS, ids=lambda t: t.name)
def test_extra_field_is_a_value_error(tool: Tool) -> None:
    raw = {"path": "x", "pattern": "x", "content": "", "old_text": "a", "new_text": "b"}
    valid = {k: v for k, v in raw.items() if k in tool.Args.model_fields}
    tool.parse(valid)
    with pytest.raises(ValueError, match="surprise"):
        tool.parse({**valid, "surprise": 1})


def test_phases() -> None:
    both = frozenset({Phase.PLANNING, Phase.WORK})
    assert ReadFile.phases == ListFiles.phases == Search.phases == both
    assert WriteFile.phases == EditFile.phases == frozenset({Phase.WORK})


# --- resolve_in_tree -----------------------------------------------------------------


def test_resolve_in_tree(ctx: ToolContext, outside: Path) -> None:
    real = Path(os.path.realpath(tree(ctx)))
    assert resolve_in_tree(tree(ctx), "src/app.py", must_exist=True) == real / "src/app.py"
    assert resolve_in_tree(tree(ctx), ".", must_exist=True) == real
    assert resolve_in_tree(tree(ctx), "new/dir/f", must_exist=False) == real / "new/dir/f"
    with pytest.raises(PathError, match="does not exist"):
        resolve_in_tree(tree(ctx), "nope.txt", must_exist=True)
    for raw in ESCAPES:
        with pytest.raises(PathError):
            resolve_in_tree(tree(ctx), raw, must_exist=False)
    (tree(ctx) / "out").symlink_to(outside)
    with pytest.raises(PathError, match="outside"):
        resolve_in_tree(tree(ctx), "out/new.txt", must_exist=False)
    # A link that stays inside the tree is fine, and resolves to its target.
    (tree(ctx) / "inner").symlink_to("src")
    assert resolve_in_tree(tree(ctx), "inner/app.py", must_exist=True) == real / "src/app.py"


def test_resolve_in_tree_through_a_linked_tree(tmp_path: Path) -> None:
    """The tree's own path may contain a symbolic link; comparisons use real paths."""
    real = tmp_path / "real"
    (real / "tree").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    assert resolve_in_tree(tmp_path / "alias" / "tree", "a", must_exist=False) == (
        real / "tree" / "a"
    )


# --- read_file -----------------------------------------------------------------------


async def test_read_numbers_lines(ctx: ToolContext) -> None:
    result = await call(ReadFile(), ctx, path="src/app.py")
    assert not result.is_error
    assert result.content == "    1| def main():\n    2|     print('hello')\n"
    assert not result.mutated


async def test_read_line_range(ctx: ToolContext) -> None:
    (tree(ctx) / "many.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    result = await call(ReadFile(), ctx, path="many.txt", start_line=10, end_line=12)
    assert result.content == "   10| line 10\n   11| line 11\n   12| line 12\n"
    tail = await call(ReadFile(), ctx, path="many.txt", start_line=99)
    assert tail.content == "   99| line 99\n  100| line 100\n"


async def test_read_bad_ranges(ctx: ToolContext) -> None:
    past = await call(ReadFile(), ctx, path="README.md", start_line=5)
    assert past.is_error
    assert "past the end" in past.content
    assert "2 lines" in past.content
    backwards = await call(ReadFile(), ctx, path="README.md", start_line=2, end_line=1)
    assert backwards.is_error
    with pytest.raises(ValueError, match="start_line"):
        ReadFile().parse({"path": "README.md", "start_line": 0})


async def test_read_truncates_with_a_marker(ctx: ToolContext) -> None:
    (tree(ctx) / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 10_001)))
    small = ToolContext(
        workspace=ctx.workspace, sandbox=ctx.sandbox, network=False, phase=Phase.WORK,
        max_read_chars=1000,
    )
    result = await call(ReadFile(), small, path="big.txt")
    body, marker = result.content.rsplit("\n", 1)
    assert len(body) <= 1000
    last_shown = int(body.splitlines()[-1].split("|")[0])
    assert f"start_line={last_shown + 1}" in marker
    assert "truncated" in marker
    # Reading on from the marker continues exactly where the first read stopped.
    more = await call(ReadFile(), small, path="big.txt", start_line=last_shown + 1)
    assert more.content.startswith(f"{last_shown + 1:>5}| line {last_shown + 1}\n")


async def test_read_cuts_one_enormous_line(ctx: ToolContext) -> None:
    (tree(ctx) / "min.js").write_text("x" * 1_000_000 + "\nsecond\n")
    small = ToolContext(
        workspace=ctx.workspace, sandbox=ctx.sandbox, network=False, phase=Phase.WORK,
        max_read_chars=500,
    )
    result = await call(ReadFile(), small, path="min.js")
    assert len(result.content) < 700
    assert "line 1 is cut" in result.content
    second = await call(ReadFile(), small, path="min.js", start_line=2)
    assert second.content == "    2| second\n"


async def test_read_binary_and_empty_files(ctx: ToolContext) -> None:
    (tree(ctx) / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    binary = await call(ReadFile(), ctx, path="image.png")
    assert not binary.is_error
    assert "binary" in binary.content
    assert "PNG" not in binary.content
    (tree(ctx) / "empty").write_bytes(b"")
    assert "empty" in (await call(ReadFile(), ctx, path="empty")).content


async def test_read_missing_file_and_directory(ctx: ToolContext) -> None:
    missing = await call(ReadFile(), ctx, path="nope.txt")
    assert missing.is_error
    assert missing.content == "Error: nope.txt does not exist"
    directory = await call(ReadFile(), ctx, path="src")
    assert directory.is_error
    assert "list_files" in directory.content


@pytest.mark.parametrize("raw", ESCAPES)
async def test_read_refuses_escapes(ctx: ToolContext, raw: str) -> None:
    result = await call(ReadFile(), ctx, path=raw)
    assert result.is_error
    assert "root:" not in result.content


async def test_read_refuses_symlink_to_etc_passwd(ctx: ToolContext) -> None:
    (tree(ctx) / "passwd").symlink_to("/etc/passwd")
    result = await call(ReadFile(), ctx, path="passwd")
    assert result.is_error
    assert "outside the repository" in result.content
    assert "root" not in result.content


async def test_read_refuses_a_relative_symlink_out(ctx: ToolContext, outside: Path) -> None:
    (tree(ctx) / "sneaky").symlink_to("../../outside/secret.txt")
    assert (tree(ctx) / "sneaky").read_text() == "TOP SECRET\n"  # the link does work
    result = await call(ReadFile(), ctx, path="sneaky")
    assert result.is_error
    assert "SECRET" not in result.content


async def test_read_and_list_refuse_symlinked_directory(ctx: ToolContext) -> None:
    (tree(ctx) / "etc").symlink_to("/etc")
    read = await call(ReadFile(), ctx, path="etc/passwd")
    assert read.is_error
    assert "root" not in read.content
    listed = await call(ListFiles(), ctx, path="etc")
    assert listed.is_error
    assert "passwd" not in listed.content
    # Listing the tree shows the link's name, never what it leads to.
    everything = await call(ListFiles(), ctx)
    assert "etc" in everything.content.splitlines()
    assert "passwd" not in everything.content


async def test_read_refuses_a_fifo_without_hanging(ctx: ToolContext) -> None:
    os.mkfifo(tree(ctx) / "pipe")
    result = await call(ReadFile(), ctx, path="pipe")
    assert result.is_error
    assert "not a regular file" in result.content


async def test_read_refuses_hard_links(ctx: ToolContext, outside: Path) -> None:
    os.link(outside / "secret.txt", tree(ctx) / "alias.txt")
    result = await call(ReadFile(), ctx, path="alias.txt")
    assert result.is_error
    assert "SECRET" not in result.content


# --- write_file ----------------------------------------------------------------------


async def test_write_creates_file_and_parents(ctx: ToolContext) -> None:
    result = await call(WriteFile(), ctx, path="pkg/sub/mod.py", content="x = 1\n")
    assert not result.is_error
    assert result.content == "Wrote 6 bytes to pkg/sub/mod.py"
    assert result.mutated
    assert (tree(ctx) / "pkg/sub/mod.py").read_text() == "x = 1\n"


async def test_write_replaces_content_and_keeps_mode(ctx: ToolContext) -> None:
    script = tree(ctx) / "run.sh"
    script.write_text("#!/bin/sh\necho a long old body\n")
    script.chmod(0o755)
    result = await call(WriteFile(), ctx, path="run.sh", content="#!/bin/sh\n")
    assert result.content == "Wrote 10 bytes to run.sh"
    assert script.read_text() == "#!/bin/sh\n"
    assert script.stat().st_mode & 0o777 == 0o755


async def test_write_counts_bytes_not_characters(ctx: ToolContext) -> None:
    result = await call(WriteFile(), ctx, path="u.txt", content="é\n")
    assert result.content == "Wrote 3 bytes to u.txt"


async def test_write_refuses_over_five_megabytes(ctx: ToolContext) -> None:
    result = await call(WriteFile(), ctx, path="big", content="x" * (MAX_WRITE_BYTES + 1))
    assert result.is_error
    assert not result.mutated
    assert not (tree(ctx) / "big").exists()
    ok = await call(WriteFile(), ctx, path="big", content="x" * MAX_WRITE_BYTES)
    assert not ok.is_error


@pytest.mark.parametrize("raw", ESCAPES)
async def test_write_refuses_escapes(ctx: ToolContext, raw: str) -> None:
    result = await call(WriteFile(), ctx, path=raw, content="pwned\n")
    assert result.is_error
    assert not result.mutated
    assert not (tree(ctx).parent / "x").exists()


async def test_write_through_symlink_out_is_refused(ctx: ToolContext, outside: Path) -> None:
    (tree(ctx) / "link.txt").symlink_to(outside / "secret.txt")
    (tree(ctx) / "dangling.txt").symlink_to(outside / "new.txt")
    (tree(ctx) / "out").symlink_to(outside)
    for path in ["link.txt", "dangling.txt", "out/secret.txt", "out/new/deep.txt"]:
        result = await call(WriteFile(), ctx, path=path, content="pwned\n")
        assert result.is_error, path
        assert "outside the repository" in result.content
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (tree(ctx) / "link.txt").is_symlink()


async def test_write_through_symlink_inside_writes_the_target(ctx: ToolContext) -> None:
    (tree(ctx) / "readme-link").symlink_to("README.md")
    result = await call(WriteFile(), ctx, path="readme-link", content="new\n")
    assert not result.is_error
    assert (tree(ctx) / "README.md").read_text() == "new\n"
    assert (tree(ctx) / "readme-link").is_symlink()


@pytest.mark.parametrize("raw", [".git/hooks/pre-commit", ".git/config", "sub/.git/x", ".GIT/x"])
async def test_write_into_git_is_refused(ctx: ToolContext, raw: str) -> None:
    before = (tree(ctx) / ".git" / "config").read_text()
    result = await call(WriteFile(), ctx, path=raw, content="[core]\n\tfsmonitor = evil\n")
    assert result.is_error
    assert ".git" in result.content
    assert (tree(ctx) / ".git" / "config").read_text() == before
    assert not (tree(ctx) / ".git" / "hooks" / "pre-commit").exists()


async def test_write_into_git_through_a_link_is_refused(ctx: ToolContext) -> None:
    (tree(ctx) / "hooks").symlink_to(".git/hooks")
    result = await call(WriteFile(), ctx, path="hooks/pre-commit", content="#!/bin/sh\n")
    assert result.is_error
    assert not (tree(ctx) / ".git" / "hooks" / "pre-commit").exists()


async def test_write_refuses_directories_fifos_and_hard_links(
    ctx: ToolContext, outside: Path
) -> None:
    assert (await call(WriteFile(), ctx, path="src", content="x")).is_error
    assert (await call(WriteFile(), ctx, path=".", content="x")).is_error
    os.mkfifo(tree(ctx) / "pipe")
    assert (await call(WriteFile(), ctx, path="pipe", content="x")).is_error
    os.link(outside / "secret.txt", tree(ctx) / "alias.txt")
    assert (await call(WriteFile(), ctx, path="alias.txt", content="pwned")).is_error
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server changes owners")
async def test_root_writes_leave_files_to_the_tree_owner(ctx: ToolContext) -> None:
    nobody = 65534
    os.chown(tree(ctx), nobody, nobody)
    await call(WriteFile(), ctx, path="new/dir/file.txt", content="x")
    for path in ["new", "new/dir", "new/dir/file.txt"]:
        info = (tree(ctx) / path).stat()
        assert (info.st_uid, info.st_gid) == (nobody, nobody), path


# --- edit_file -----------------------------------------------------------------------


async def test_edit_replaces_exactly_once(ctx: ToolContext) -> None:
    result = await call(
        EditFile(), ctx, path="src/app.py", old_text="print('hello')", new_text="print('bye')"
    )
    assert not result.is_error
    assert result.mutated
    assert result.content == "Replaced 1 occurrence in src/app.py"
    assert (tree(ctx) / "src/app.py").read_text() == "def main():\n    print('bye')\n"


async def test_edit_ambiguous_text_is_refused(ctx: ToolContext) -> None:
    path = tree(ctx) / "dup.txt"
    path.write_text("a = 1\nb = 1\nc = 1\n")
    result = await call(EditFile(), ctx, path="dup.txt", old_text=" = 1", new_text=" = 2")
    assert result.is_error
    assert not result.mutated
    assert "3 times" in result.content
    assert "context" in result.content
    assert path.read_text() == "a = 1\nb = 1\nc = 1\n"
    unique = await call(EditFile(), ctx, path="dup.txt", old_text="b = 1", new_text="b = 2")
    assert not unique.is_error
    assert path.read_text() == "a = 1\nb = 2\nc = 1\n"


async def test_edit_replace_all(ctx: ToolContext) -> None:
    path = tree(ctx) / "dup.txt"
    path.write_text("a = 1\nb = 1\nc = 1\n")
    result = await call(
        EditFile(), ctx, path="dup.txt", old_text=" = 1", new_text=" = 22", replace_all=True
    )
    assert result.content == "Replaced 3 occurrences in dup.txt"
    assert path.read_text() == "a = 22\nb = 22\nc = 22\n"


async def test_edit_absent_text_is_refused(ctx: ToolContext) -> None:
    result = await call(EditFile(), ctx, path="src/app.py", old_text="nothing", new_text="x")
    assert result.is_error
    assert "0 times" in result.content
    empty = await call(EditFile(), ctx, path="src/app.py", old_text="", new_text="x")
    assert empty.is_error
    missing = await call(EditFile(), ctx, path="nope.py", old_text="a", new_text="b")
    assert missing.is_error
    assert "does not exist" in missing.content


async def test_edit_keeps_other_bytes_untouched(ctx: ToolContext) -> None:
    path = tree(ctx) / "latin1.txt"
    path.write_bytes(b"caf\xe9\r\nname = old\r\n")  # not UTF-8, CRLF line ends
    result = await call(EditFile(), ctx, path="latin1.txt", old_text="old", new_text="new")
    assert not result.is_error
    assert path.read_bytes() == b"caf\xe9\r\nname = new\r\n"


async def test_edit_refuses_escapes_links_and_git(ctx: ToolContext, outside: Path) -> None:
    (tree(ctx) / "link.txt").symlink_to(outside / "secret.txt")
    for path in [*ESCAPES, "link.txt", ".git/config"]:
        result = await call(EditFile(), ctx, path=path, old_text="TOP", new_text="NO")
        assert result.is_error, path
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


async def test_edit_refuses_binary_files(ctx: ToolContext) -> None:
    (tree(ctx) / "blob").write_bytes(b"abc\x00def")
    result = await call(EditFile(), ctx, path="blob", old_text="abc", new_text="x")
    assert result.is_error
    assert "binary" in result.content
    assert (tree(ctx) / "blob").read_bytes() == b"abc\x00def"


# --- list_files ----------------------------------------------------------------------


async def test_list_files(ctx: ToolContext) -> None:
    result = await call(ListFiles(), ctx)
    assert result.content.splitlines() == ["README.md", "src/app.py"]  # .git skipped
    sub = await call(ListFiles(), ctx, path="src")
    assert sub.content == "src/app.py"


async def test_list_files_errors(ctx: ToolContext) -> None:
    assert (await call(ListFiles(), ctx, path="README.md")).is_error
    assert (await call(ListFiles(), ctx, path="nope")).is_error
    for raw in ESCAPES:
        assert (await call(ListFiles(), ctx, path=raw)).is_error, raw
    (tree(ctx) / "empty").mkdir()
    assert "No files" in (await call(ListFiles(), ctx, path="empty")).content


async def test_list_files_is_capped(ctx: ToolContext) -> None:
    many = tree(ctx) / "many"
    many.mkdir()
    for i in range(MAX_LIST_ENTRIES + 20):
        (many / f"f{i:04}").write_text("")
    result = await call(ListFiles(), ctx, path="many")
    lines = result.content.splitlines()
    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert lines[0] == "many/f0000"
    assert "stopped at 500" in lines[-1]


# --- search --------------------------------------------------------------------------


@needs_bubblewrap
async def test_search_finds_matches(ctx: ToolContext) -> None:
    result = await call(Search(), ctx, pattern="hel+o")
    assert not result.is_error
    assert sorted(result.content.splitlines()) == [
        "README.md:2:hello world",
        "src/app.py:2:    print('hello')",
    ]
    assert not result.mutated


@needs_bubblewrap
async def test_search_path_and_glob(ctx: ToolContext) -> None:
    in_src = await call(Search(), ctx, pattern="hello", path="src")
    assert in_src.content == "src/app.py:2:    print('hello')"
    one_file = await call(Search(), ctx, pattern="hello", path="README.md")
    assert one_file.content == "README.md:2:hello world"
    by_glob = await call(Search(), ctx, pattern="hello", glob="*.md")
    assert by_glob.content == "README.md:2:hello world"


@needs_bubblewrap
async def test_search_no_matches_and_bad_pattern(ctx: ToolContext) -> None:
    assert (await call(Search(), ctx, pattern="absent_xyz")).content == "No matches."
    bad = await call(Search(), ctx, pattern="(unclosed")
    assert bad.is_error
    assert "grep" in bad.content


@needs_bubblewrap
async def test_search_pattern_is_not_a_shell_command(ctx: ToolContext) -> None:
    for pattern in ["'; touch /workspace/pwned; '", "$(touch /workspace/pwned)", "-f/etc/passwd"]:
        result = await call(Search(), ctx, pattern=pattern)
        assert result.content == "No matches.", pattern
    assert not (tree(ctx) / "pwned").exists()
    glob = await call(Search(), ctx, pattern="x", glob="*'; touch /workspace/pwned; '")
    assert not glob.is_error
    assert not (tree(ctx) / "pwned").exists()


@needs_bubblewrap
async def test_search_skips_git_binaries_and_links(ctx: ToolContext) -> None:
    (tree(ctx) / ".git" / "needle").write_text("needle\n")
    (tree(ctx) / "blob").write_bytes(b"needle\x00")
    (tree(ctx) / "passwd").symlink_to("/etc/passwd")
    (tree(ctx) / "etc").symlink_to("/etc")
    assert (await call(Search(), ctx, pattern="needle")).content == "No matches."
    assert (await call(Search(), ctx, pattern="root")).content == "No matches."
    for path in ["passwd", "etc", *ESCAPES]:
        result = await call(Search(), ctx, pattern="root", path=path)
        assert result.is_error, path
        assert "root:" not in result.content


@needs_bubblewrap
async def test_search_output_is_capped(ctx: ToolContext) -> None:
    (tree(ctx) / "many.txt").write_text("match\n" * 1000 + "match" + "y" * 1000 + "\n")
    result = await call(Search(), ctx, pattern="match")
    lines = result.content.splitlines()
    assert len(lines) == 201
    assert "more matches not shown" in lines[-1]
    long_line = await call(Search(), ctx, pattern="chy+")
    assert long_line.content.endswith("[...]")
    assert len(long_line.content) < 400


@needs_bubblewrap
async def test_search_in_planning_phase(ctx: ToolContext) -> None:
    planning = ToolContext(
        workspace=ctx.workspace, sandbox=ctx.sandbox, network=False, phase=Phase.PLANNING
    )
    result = await call(Search(), planning, pattern="def main")
    assert result.content == "src/app.py:1:def main():"


# --- the workspace limit -----------------------------------------------------------------

SMALL_WORKSPACE_BYTES = 8 * 1024 * 1024
CHUNK = "x" * (3 * 1024 * 1024)


@pytest.fixture
def small_ctx(ctx: ToolContext) -> ToolContext:
    sandbox = BubblewrapSandbox(limits=Limits(workspace_bytes=SMALL_WORKSPACE_BYTES))
    return replace(ctx, sandbox=sandbox)


async def test_file_tools_cannot_grow_the_workspace_past_its_limit(small_ctx: ToolContext) -> None:
    # Files under write_file's own 5 MB cap, many of them: the tree's limit still holds.
    results = [
        await call(WriteFile(), small_ctx, path=f"big/{i}.txt", content=CHUNK) for i in range(4)
    ]
    assert [r.is_error for r in results] == [False, False, True, True]
    assert "The workspace is at its limit of 8 MB" in results[2].content
    assert not (tree(small_ctx) / "big" / "2.txt").exists()
    # Growing an existing file by edit is refused the same way; shrinking is always fine.
    grow = await call(
        EditFile(), small_ctx, path="README.md", old_text="hello world", new_text=CHUNK
    )
    assert grow.is_error
    assert "at its limit" in grow.content
    shrink = await call(WriteFile(), small_ctx, path="big/0.txt", content="small")
    assert not shrink.is_error
    again = await call(WriteFile(), small_ctx, path="big/2.txt", content=CHUNK)
    assert not again.is_error, again.content
