"""A tiny name → factory registry shared by models, SSL methods and strategies.

Recipes name every component by a string, so each family keeps one registry: adding
a model is one decorator, and an unknown name fails with the list of valid ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories returning ``T``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}

    def register(
        self, name: str, description: str = ""
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._factories[name] = factory
            doc = (factory.__doc__ or "").strip().splitlines()
            self._descriptions[name] = description or (doc[0] if doc else "")
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            valid = ", ".join(sorted(self._factories)) or "(none registered)"
            raise KeyError(f"unknown {self.kind} '{name}'; valid names: {valid}") from None

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        return {name: self._descriptions[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._factories


def import_submodules(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package so that their ``@register`` decorators run.

    Each family's ``__init__`` calls this: a new model file registers itself by existing,
    with no central list to edit (and none to forget).
    """
    for info in pkgutil.iter_modules(package_path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
