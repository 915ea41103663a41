"""Flower's own rules behind avfed's screening: FedProx, FedAvgM, FedAdam, FedYogi.

Flower implements these server-side; avfed only adds the screening mixin so that a
poisoned or failed reply is excluded before the rule sees it. FedProx's proximal term
is applied by the client: Flower sends ``proximal-mu`` in the train config and the
client adds (μ/2)·‖w − w_global‖² to its loss. Hyper-parameters are Flower's keyword
arguments (``fl.strategy_args``), with Flower's defaults.
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import FedAdam, FedAvgM, FedProx, FedYogi

from avfed.fl.strategies.base import ScreenedStrategyMixin
from avfed.fl.strategies.registry import register_strategy


class ScreenedFedProx(ScreenedStrategyMixin, FedProx):
    """FedAvg + the client-side proximal term (Li et al., 2020)."""


class ScreenedFedAvgM(ScreenedStrategyMixin, FedAvgM):
    """FedAvg with server momentum (Hsu et al., 2019)."""


class ScreenedFedAdam(ScreenedStrategyMixin, FedAdam):
    """Adaptive server optimizer (Reddi et al., 2021)."""


class ScreenedFedYogi(ScreenedStrategyMixin, FedYogi):
    """Adaptive server optimizer with Yogi's additive second moment (Reddi et al., 2021)."""


@register_strategy("fedprox", "FedAvg + client proximal term; args: proximal_mu")
def fedprox(**kwargs: Any) -> ScreenedFedProx:
    return ScreenedFedProx(**kwargs)


@register_strategy("fedavgm", "FedAvg with server momentum; args: server_learning_rate, "
                              "server_momentum")
def fedavgm(**kwargs: Any) -> ScreenedFedAvgM:
    return ScreenedFedAvgM(**kwargs)


@register_strategy("fedadam", "server-side Adam on the averaged update; args: eta, eta_l, "
                              "beta_1, beta_2, tau")
def fedadam(**kwargs: Any) -> ScreenedFedAdam:
    return ScreenedFedAdam(**kwargs)


@register_strategy("fedyogi", "server-side Yogi on the averaged update; args: eta, eta_l, "
                              "beta_1, beta_2, tau")
def fedyogi(**kwargs: Any) -> ScreenedFedYogi:
    return ScreenedFedYogi(**kwargs)
