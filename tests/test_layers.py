"""Who may import whom (docs/architecture.md), checked on the source, and no import cycles.

addon/ (bpy) ──► adain_wire/ (numpy, msgpack, pyzmq) ◄── backend/ ──► adain/ (torch)
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("adain", "adain_wire", "addon", "backend")

# package -> top-level names its modules must never import
FORBIDDEN = {
    "adain_wire": {"addon", "backend", "adain", "bpy", "torch", "PIL"},
    "backend": {"addon", "bpy"},
    "adain": {"addon", "backend", "bpy", "zmq"},
    "addon": {"backend", "adain", "torch"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(nodes: Iterable[ast.stmt | ast.AST], path: Path) -> set[str]:
    """Absolute names of the modules the import statements among ``nodes`` import (relative ones resolved; for
    ``from X import y`` both X and X.y, since y may be a module)."""
    here = path.relative_to(REPO).with_suffix("").parts[:-1]  # the package a relative import starts from
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1])
                prefix = f"{base}.{node.module}" if node.module else base
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def all_imports(path: Path) -> set[str]:
    """Every import of a file, at any depth (inside functions and ``if TYPE_CHECKING`` too)."""
    return imports_of(ast.walk(ast.parse(path.read_text(encoding="utf-8"))), path)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        tops = {name.split(".")[0] for name in all_imports(path)}
        bad += [f"{path.relative_to(REPO)} imports {top}" for top in sorted(tops & FORBIDDEN[package])]
    assert bad == []


def find_cycles(graph: dict[str, list[str]]) -> set[tuple[str, ...]]:
    """The import cycles of a module graph (module -> the modules it imports at import time), each once."""
    cycles: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.add(tuple([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_no_import_cycles() -> None:
    files = {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}
    graph = {
        # every import counts, one inside a function too (a lazy import is how a cycle hides); a module's own parent
        # packages are no edge: they are being imported already when it runs
        name: sorted(n for n in all_imports(path) & set(files) if n != name and not name.startswith(n + "."))
        for name, path in files.items()
    }
    assert graph["addon.render"] and graph["adain_wire.client"]  # the graph is not empty
    assert sorted(find_cycles(graph)) == []


def test_the_cycle_finder_sees_cycles() -> None:
    """As render and compositor were: render -> compositor -> render (plus a longer one, and no false alarm)."""
    graph = {"render": ["compositor", "colour"], "compositor": ["render"], "colour": [], "a": ["b"], "b": ["c"], "c": ["a"]}
    assert find_cycles(graph) == {("compositor", "render", "compositor"), ("a", "b", "c", "a")}
    assert find_cycles({"x": ["y"], "y": [], "z": ["x", "y"]}) == set()
    here = REPO / "addon" / "render.py"
    assert imports_of(ast.parse("from .compositor import PASS\nfrom . import colour\n").body, here) == {
        "addon", "addon.colour", "addon.compositor", "addon.compositor.PASS"
    }  # fmt: skip
