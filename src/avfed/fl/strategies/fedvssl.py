"""FedVSSL (Rehman et al., ECCV 2022): loss-weighted mixing, SWA and partial updates.

The server mixes, element-wise, an average weighted by exp(−L_k) (clients whose
pretext loss is low count more) with the example-weighted FedAvg, ``alpha`` setting the
share of the former, then optionally averages with the previous global model
(``beta``, stochastic weight averaging) from round 2 on, as the authors' code does: in
round 1 the previous model is the random initialisation, which SWA would drag the first
aggregate back towards. With ``partial_update`` the clients overwrite
only the tensors under ``partial_prefixes`` (the backbone) with the global ones and keep
their own heads, which the strategy tells them in the train config.
"""

from __future__ import annotations

from typing import Any

from avfed.fl.aggregation import State, check_fraction, fedvssl
from avfed.fl.protocol import CLIENT_UPDATE_KEY, PARTIAL_PREFIXES_KEY
from avfed.fl.strategies.registry import register_strategy
from avfed.fl.strategies.rule import RuleStrategy


class FedVSSL(RuleStrategy):
    def __init__(self, *args: Any, alpha: float = 0.9, beta: float = 0.0,
                 partial_update: bool = False, partial_prefixes: str = "backbone.",
                 **kwargs: Any) -> None:
        check_fraction("alpha", alpha)
        check_fraction("beta", beta)
        super().__init__(*args, **kwargs)
        self.alpha, self.beta = alpha, beta
        self.partial_update, self.partial_prefixes = partial_update, partial_prefixes

    def client_config(self, server_round: int) -> dict[str, Any]:
        if not self.partial_update:
            return {}
        return {CLIENT_UPDATE_KEY: "partial", PARTIAL_PREFIXES_KEY: self.partial_prefixes}

    def combine(self, server_round: int, states: list[State], num_examples: list[float],
                losses: list[float], previous: State | None) -> State:
        swa_with = previous if server_round > 1 else None
        return fedvssl(states, num_examples, losses, swa_with, alpha=self.alpha,
                       beta=self.beta)


@register_strategy("fedvssl", "FedVSSL: α·loss-weighted + (1−α)·FedAvg, β SWA, optional "
                              "partial update; args: alpha=0.9, beta=0, partial_update")
def fedvssl_strategy(**kwargs: Any) -> FedVSSL:
    return FedVSSL(**kwargs)
