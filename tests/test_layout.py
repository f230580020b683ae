"""The layout shows the architecture: no import circles, and imports point one way between wings.

Every import counts, also those inside functions or under TYPE_CHECKING: a circle there is still two
modules that cannot be understood one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "flows", "storage")
# Wing -> wings it must not import (the direction cli -> telegram/web -> agents -> core -> services).
FORBIDDEN = {
    "bot.core": ("bot.telegram", "bot.web", "bot.agents", "bot.cli"),
    "bot.services": ("bot.telegram", "bot.web", "bot.agents", "bot.cli", "bot.core"),
    "bot.agents": ("bot.telegram", "bot.web", "bot.cli"),
    "bot.telegram": ("bot.cli",),
    "flows": ("bot", "storage", "telegram", "httpx", "sqlalchemy", "sqlmodel"),
    # bot/'s own top-level modules are shared by the wings, so they import none of the outer ones.
    **{shared: ("bot.telegram", "bot.web", "bot.agents", "bot.cli")
       for shared in ("bot.config", "bot.logs", "bot.metrics", "bot.redaction", "bot.updates")},
    "storage": ("bot",),
}

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Project modules a file imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) - {name} - _parents(name) for name, path in files.items()}


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, if any (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circles() -> None:
    edges = graph()
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_cycle_finder_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("wing", sorted(FORBIDDEN))
def test_imports_point_one_way(wing: str) -> None:
    wrong = {
        (name, dep)
        for name, deps in graph().items() if name == wing or name.startswith(wing + ".")
        for dep in deps if any(dep == f or dep.startswith(f + ".") for f in FORBIDDEN[wing])
    }
    assert not wrong, sorted(wrong)


def test_flows_imports_no_io_library() -> None:
    """flows/ is pure: no PTB, httpx or SQL even where the project graph cannot see it."""
    banned = ("telegram", "httpx", "sqlalchemy", "sqlmodel", "asyncpg", "aiosqlite")
    for path in (ROOT / "flows").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not [n for n in names if n.split(".")[0] in banned], (path, names)


@pytest.mark.parametrize("wing", ["telegram", "core", "agents", "web", "services", "cli"])
def test_the_readme_map_names_every_module_of_a_wing(wing: str) -> None:
    """A newcomer finds every module from the README's table: a new module must be added there."""
    row = next(line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
               if line.startswith(f"| `bot/{wing}/` |"))
    modules = {p.stem for p in (ROOT / "bot" / wing).glob("*.py") if not p.stem.startswith("__")}
    assert not {m for m in modules if f"`{m}`" not in row}, row
