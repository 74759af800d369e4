"""Who may import whom (docs/architecture.md), checked on the source: every import statement, at any depth.

addon/ (bpy) ──► adain_wire/ (numpy, msgpack, pyzmq) ◄── backend/ ──► adain/ (torch)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package -> top-level names its modules must never import
FORBIDDEN = {
    "adain_wire": {"addon", "backend", "adain", "bpy", "torch", "PIL"},
    "backend": {"addon", "bpy"},
    "adain": {"addon", "backend", "bpy", "zmq"},
    "addon": {"backend", "adain", "torch"},
}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against ``package``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parts = path.relative_to(REPO).with_suffix("").parts
    here = parts[:-1]  # the package a relative import starts from (for __init__.py too)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                prefix = ".".join((*base, node.module) if node.module else base)
                if node.module:
                    found.add(prefix)
                else:
                    found.update(f"{prefix}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        tops = {name.split(".")[0] for name in imported_modules(path, package)}
        bad += [f"{path.relative_to(REPO)} imports {top}" for top in sorted(tops & FORBIDDEN[package])]
    assert bad == []
