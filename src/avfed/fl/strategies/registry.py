"""Aggregation strategies by name: ``strategies.create("fedavg", fraction_train=0.5)``."""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import Strategy

from avfed.registry import Registry

strategy_registry: Registry[Strategy] = Registry("strategy")
register_strategy = strategy_registry.register


def create(name: str, **kwargs: Any) -> Strategy:
    return strategy_registry.create(name, **kwargs)


def list_strategies() -> dict[str, str]:
    return strategy_registry.describe()
