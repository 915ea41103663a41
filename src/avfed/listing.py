"""Names and descriptions of the built-in components, read from avfed's source files.

``avfed models`` (or ``methods``, ``strategies``, …) only prints what the registration
decorators say, but importing the registries means importing torch, Flower and Ray:
seconds, to print a table. Every built-in registration is a decorator call with literal
arguments, ``@register_model("resnet18_cifar", "…")``, so the listing is read from the
source with :mod:`ast` instead, without executing it. When a registration is not
literal (a name or description computed at import time) the reader says so and the
command imports the registry after all; a test checks that both roads print the same.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


class NotLiteral(Exception):
    """A registration whose name or description is computed, not written out."""


def _constants(module: ast.Module) -> dict[str, str]:
    """The module's top-level ``NAME = "text"`` assignments."""
    found = {}
    for node in module.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            found[node.targets[0].id] = node.value.value
    return found


def _literal(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    """A string literal, or an f-string of the module's string constants."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                parts.append(part.value)
            elif (isinstance(part, ast.FormattedValue) and part.conversion == -1
                  and part.format_spec is None and isinstance(part.value, ast.Name)
                  and part.value.id in constants):
                parts.append(constants[part.value.id])
            else:
                raise NotLiteral(ast.unparse(node))
        return "".join(parts)
    raise NotLiteral(ast.unparse(node))


@cache
def _module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def registrations(decorator: str, package: Path = PACKAGE) -> dict[str, str]:
    """``{name: description}`` of every ``@decorator(name, description)`` in ``package``,
    sorted by name as :meth:`avfed.registry.Registry.describe` sorts them; a missing
    description is the first line of the factory's docstring, as the registry does.
    Raises :class:`NotLiteral` when a registration cannot be read without running it."""
    marker = f"@{decorator}("
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        if marker not in path.read_text(encoding="utf-8"):
            continue
        module = _module(path)
        constants = _constants(module)
        for node in ast.walk(module):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                continue
            for call in node.decorator_list:
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id == decorator):
                    continue
                keywords = {k.arg: k.value for k in call.keywords}
                name = _literal(call.args[0] if call.args else keywords.get("name"),
                                constants)
                text = _literal(call.args[1] if len(call.args) > 1
                                else keywords.get("description"), constants)
                if name is None:
                    raise NotLiteral(f"{path.name}: @{decorator} without a name")
                if not text:
                    doc = (ast.get_docstring(node) or "").strip().splitlines()
                    text = doc[0] if doc else ""
                found[name] = text
    return {name: found[name] for name in sorted(found)}
