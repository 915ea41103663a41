"""What every ``avfed`` subcommand module shares: the console and the recipe argument.

Kept apart from :mod:`avfed.cli` so that subcommand modules (``federate``, ``cardio``,
``colorize``) can use them without importing the command line that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

DEFAULT_RECIPE = "simclr_digits"

console = Console(highlight=False, soft_wrap=True)


def take_argument(items: Sequence[str], key: str) -> tuple[str | None, list[str]]:
    """Pull the last ``key=VALUE`` out of a ``key=value`` list; the rest are overrides."""
    value: str | None = None
    rest: list[str] = []
    for item in items:
        if item.startswith(f"{key}="):
            value = item.split("=", 1)[1]
        else:
            rest.append(item)
    return value, rest


def split_recipe(items: Sequence[str]) -> tuple[str, list[str]]:
    """Pull ``recipe=NAME`` out of the ``key=value`` list; the rest are overrides."""
    recipe, overrides = take_argument(items, "recipe")
    return (DEFAULT_RECIPE if recipe is None else recipe), overrides


def split_resume(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """Pull ``resume=RUN_DIR`` out of the ``key=value`` list; the rest are overrides."""
    return take_argument(items, "resume")
