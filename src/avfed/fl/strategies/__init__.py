"""Aggregation strategies (subclasses of Flower's); importing registers the built-ins."""

from avfed.fl.strategies import fedavg as _fedavg  # noqa: F401  (registers strategies)
from avfed.fl.strategies.registry import (
    create,
    list_strategies,
    register_strategy,
    strategy_registry,
)

__all__ = ["create", "list_strategies", "register_strategy", "strategy_registry"]
