"""What every ``avfed`` subcommand module shares: the console and the recipe argument.

Kept apart from :mod:`avfed.cli` so that subcommand modules (``federate``, ``cardio``,
``colorize``) can use them without importing the command line that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

DEFAULT_RECIPE = "simclr_digits"

console = Console(highlight=False, soft_wrap=True)


def split_recipe(items: Sequence[str]) -> tuple[str, list[str]]:
    """Pull ``recipe=NAME`` out of the ``key=value`` list; the rest are overrides."""
    recipe = DEFAULT_RECIPE
    overrides: list[str] = []
    for item in items:
        if item.startswith("recipe="):
            recipe = item.split("=", 1)[1]
        else:
            overrides.append(item)
    return recipe, overrides
