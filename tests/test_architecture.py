"""The layering of DESIGN.md §2, checked on the source: dependencies point one way, the
API reaches the engine only through the ``Runner`` port, and engine functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import openjules

PACKAGE = Path(openjules.__file__).parent
ENGINE_FUNCTION_MAX_LINES = 60

_SERVER_SIDE = (
    "openjules.store",
    "openjules.engine",
    "openjules.api",
    "openjules.web",
    "openjules.cli",
    "openjules.server",
    "openjules.http_workers",
    "openjules.testing",
    "openjules.settings",
)
# layer -> the openjules modules (prefixes) it must never import.
FORBIDDEN = {
    "openjules._types": ("openjules.store", "openjules.engine", "openjules.api", "openjules.cli"),
    "openjules._errors": ("openjules.store", "openjules.engine", "openjules.api", "openjules.cli"),
    "openjules.settings": ("openjules.store", "openjules.engine", "openjules.api", "openjules.cli"),
    "openjules.timing": ("openjules.store", "openjules.engine", "openjules.api", "openjules.cli"),
    "openjules.store": (
        "openjules.engine",
        "openjules.api",
        "openjules.web",
        "openjules.cli",
        "openjules.server",
        "openjules.testing",
    ),
    "openjules.engine": (
        "openjules.api",
        "openjules.web",
        "openjules.cli",
        "openjules.server",
        "openjules.testing",
    ),
    "openjules.api": ("openjules.cli", "openjules.server", "openjules.testing", "openjules.web"),
    # The web app reaches the engine only as the API does (through the app's runner).
    "openjules.web": (
        "openjules.cli",
        "openjules.server",
        "openjules.testing",
        "openjules.engine",
    ),
    "openjules.server": ("openjules.cli", "openjules.testing"),
    "openjules.http_workers": ("openjules.cli", "openjules.testing"),
    "openjules.testing": ("openjules.cli",),
    "openjules._cancellation": (
        "openjules.store",
        "openjules.engine",
        "openjules.api",
        "openjules.cli",
    ),
    "openjules._timestamps": (
        "openjules.store",
        "openjules.engine",
        "openjules.api",
        "openjules.cli",
    ),
    # The SDK and the MCP server are clients: they run where no server does, and reach it
    # only over HTTP (the wire models and the error tree are all they share with it).
    "openjules.client": _SERVER_SIDE,
    "openjules.mcp": _SERVER_SIDE,
}
# The one part of the engine the API may use.
API_MAY_IMPORT_FROM_ENGINE = {"openjules.engine.runner"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, module: str) -> set[str]:
    """Every openjules module ``path`` (module ``module``) imports, at the top or inside a
    function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("openjules")}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations() -> list[str]:
    problems: list[str] = []
    for path in _sources():
        module = _module_name(path)
        problems += _check(module, _imports(path, module=module))
    return problems


def _check(module: str, imported: set[str]) -> list[str]:
    """What ``module`` must not import, of what it imports."""
    problems: list[str] = []
    for layer, forbidden in FORBIDDEN.items():
        if _within(module, layer):
            problems += [
                f"{module} imports {name}"
                for name in sorted(imported)
                if any(_within(name, f) for f in forbidden)
            ]
    if _within(module, "openjules.api"):
        problems += [
            f"{module} imports {name} (the API may use only the Runner port of the engine)"
            for name in sorted(imported)
            if _within(name, "openjules.engine")
            and name != "openjules.engine"  # ``from openjules.engine import runner``
            and not any(_within(name, allowed) for allowed in API_MAY_IMPORT_FROM_ENGINE)
        ]
    return problems


def test_dependencies_point_one_way() -> None:
    assert _violations() == []


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """The checker itself: a lazy import and a relative import are both found and refused;
    the API's use of the Runner port is allowed, any other engine module is not."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f() -> None:\n"
        "    from openjules.engine.agent import Agent\n"
        "from ..api import app\n"
    )
    imported = _imports(probe, module="openjules.store.probe")
    assert {"openjules.engine.agent", "openjules.api.app"} <= imported
    problems = _check("openjules.store.probe", imported)
    assert "openjules.store.probe imports openjules.engine.agent" in problems
    assert "openjules.store.probe imports openjules.api.app" in problems
    assert _check("openjules.api.app", {"openjules.engine.runner"}) == []
    assert _check("openjules.api.app", {"openjules.engine.service"})


def _long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                    found.append(f"{where} {node.name} ({length} lines)")
    return found


def test_engine_functions_stay_short() -> None:
    assert _long_functions(PACKAGE / "engine", ENGINE_FUNCTION_MAX_LINES) == []


def test_the_length_check_finds_long_functions() -> None:
    found = _long_functions(PACKAGE / "engine", 5)
    assert any(" run_session " in f or "run_session (" in f for f in found), found
