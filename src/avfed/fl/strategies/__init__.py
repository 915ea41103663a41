"""Aggregation strategies (subclasses of Flower's); importing registers the built-ins."""

from avfed.fl.strategies.registry import (
    create,
    list_strategies,
    register_strategy,
    strategy_registry,
)
from avfed.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["create", "list_strategies", "register_strategy", "strategy_registry"]
