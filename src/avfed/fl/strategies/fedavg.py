"""FedAvg (McMahan et al., 2017) as Flower implements it, behind avfed's screening."""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import FedAvg

from avfed.fl.strategies.base import ScreenedStrategyMixin
from avfed.fl.strategies.registry import register_strategy


class ScreenedFedAvg(ScreenedStrategyMixin, FedAvg):
    """Flower's FedAvg, aggregating only replies that pass screening."""


@register_strategy("fedavg", "FedAvg weighted by client example counts (Flower's)")
def fedavg(**kwargs: Any) -> ScreenedFedAvg:
    return ScreenedFedAvg(**kwargs)
