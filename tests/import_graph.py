"""avfed's import graph read from its source (no import executed), for structure tests."""

from __future__ import annotations

import ast
from pathlib import Path

import avfed

ROOT = Path(avfed.__file__).parent


def module_files(*packages: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for avfed (or only the given sub-packages)."""
    folders = [ROOT / p for p in packages] or [ROOT]
    return {f"avfed.{p.relative_to(ROOT).with_suffix('').as_posix().replace('/', '.')}"
            .removesuffix(".__init__").removesuffix("."): p
            for folder in folders for p in folder.rglob("*.py")}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def avfed_imports(path: Path) -> set[str]:
    """Every ``avfed.*`` module a file imports at run time, at module level or inside
    functions (imports under ``if TYPE_CHECKING`` only serve annotations)."""
    found: set[str] = set()
    skipped: set[int] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if _type_checking_only(node):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("avfed")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("avfed"):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    return {m: {i for i in avfed_imports(p) if i in files and i != m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or ``None`` when the graph has none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module):], module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(graph[module]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None
