"""Aggregation strategies by name: ``strategies.create("fedavg", fraction_train=0.5)``."""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import Strategy

from avfed.registry import Registry

# what the run builder sets from fl.* fields (and the reporter hook)
strategy_registry: Registry[Strategy] = Registry("strategy", injected=(
    "fraction_train", "fraction_evaluate", "min_train_nodes", "min_available_nodes",
    "min_evaluate_nodes", "on_round", "min_accepted"))
register_strategy = strategy_registry.register


def create(name: str, **kwargs: Any) -> Strategy:
    return strategy_registry.create(name, **kwargs)


def list_strategies() -> dict[str, str]:
    return strategy_registry.describe()
