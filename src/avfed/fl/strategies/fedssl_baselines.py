"""FedU and FedEMA: the divergence-aware federated BYOL baselines.

Both average the online network and predictor with FedAvg on the server; what
differs is how a client takes the global model in (see
:mod:`avfed.fl.client_merge`), which these strategies request through the train
config. Use them with ``ssl.method=byol`` (the target network stays on the client).
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import FedAvg

from avfed.fl.protocol import (
    CLIENT_UPDATE_KEY,
    FEDEMA_LAMBDA_KEY,
    FEDEMA_TAU_KEY,
    FEDU_THRESHOLD_KEY,
    PREDICTOR_PREFIX_KEY,
)
from avfed.fl.strategies.base import ScreenedStrategyMixin
from avfed.fl.strategies.registry import register_strategy


class FedU(ScreenedStrategyMixin, FedAvg):
    """FedAvg + FedU's divergence-aware predictor update on the clients."""

    def __init__(self, *args: Any, threshold: float = 0.4, predictor_prefix: str = "predictor.",
                 **kwargs: Any) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        super().__init__(*args, **kwargs)
        self.threshold, self.predictor_prefix = threshold, predictor_prefix

    def client_config(self, server_round: int) -> dict[str, Any]:
        return {CLIENT_UPDATE_KEY: "fedu", FEDU_THRESHOLD_KEY: self.threshold,
                PREDICTOR_PREFIX_KEY: self.predictor_prefix}


class FedEMA(ScreenedStrategyMixin, FedAvg):
    """FedAvg + FedEMA's divergence-aware moving-average update on the clients."""

    def __init__(self, *args: Any, tau: float = 0.7, lam: float = 0.0,
                 **kwargs: Any) -> None:
        if not 0 < tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0 (0 = auto-scale from tau), got {lam}")
        super().__init__(*args, **kwargs)
        self.tau, self.lam = tau, lam

    def client_config(self, server_round: int) -> dict[str, Any]:
        return {CLIENT_UPDATE_KEY: "fedema", FEDEMA_TAU_KEY: self.tau,
                FEDEMA_LAMBDA_KEY: self.lam}


@register_strategy("fedu", "FedU: FedAvg + divergence-aware predictor update on clients "
                           "(BYOL); args: threshold=0.4")
def fedu(**kwargs: Any) -> FedU:
    return FedU(**kwargs)


@register_strategy("fedema", "FedEMA: FedAvg + divergence-aware EMA of global into local "
                             "(BYOL); args: tau=0.7 (auto λ), lam (fixed λ)")
def fedema(**kwargs: Any) -> FedEMA:
    return FedEMA(**kwargs)
