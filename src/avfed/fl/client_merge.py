"""How a client combines the global weights it receives with its own previous model.

The strategy chooses the rule and sends it in the round's train config, so the client
app stays one program for every aggregation rule: plain replacement (FedAvg and
friends), FedVSSL's partial update, FedU's and FedEMA's divergence-aware updates,
and FedProx's proximal term during local training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from flwr.app import ConfigRecord

from avfed.ssl.base import SSLMethod

Regularizer = Callable[[], torch.Tensor]
CLIENT_UPDATE_KEY = "client-update"
PROXIMAL_MU_KEY = "proximal-mu"  # Flower's FedProx sends this


def _rule(config: ConfigRecord) -> str:
    return str(config.get(CLIENT_UPDATE_KEY, "replace"))


def needs_local_state(config: ConfigRecord) -> bool:
    """Whether the rule reads the client's previous model next round."""
    return _rule(config) != "replace"


def merge_global(
    local_shared: dict[str, torch.Tensor],
    global_state: dict[str, torch.Tensor],
    config: ConfigRecord,
    *,
    first_round: bool,
) -> dict[str, torch.Tensor]:
    """The shared weights this client starts its round from."""
    rule = _rule(config)
    if rule == "replace" or first_round:
        return global_state
    raise ValueError(f"unknown client update rule '{rule}' in the train config")


def proximal_regularizer(
    method: SSLMethod, global_state: dict[str, torch.Tensor], config: ConfigRecord
) -> Callable[[], torch.Tensor] | None:
    """FedProx's (μ/2)·‖w − w_global‖² over the shared parameters, or ``None``."""
    mu = float(config.get(PROXIMAL_MU_KEY, 0.0))
    if mu <= 0:
        return None
    params = dict(method.named_parameters())
    pairs = [(params[k], v.to(params[k].device)) for k, v in global_state.items()
             if k in params]

    def term() -> torch.Tensor:
        return 0.5 * mu * sum(((w - g) ** 2).sum() for w, g in pairs)  # type: ignore[return-value]

    return term


def combine_regularizers(*terms: Regularizer | None) -> Regularizer | None:
    """Sum the terms that are present; ``None`` when there are none."""
    active = [t for t in terms if t is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda: sum(t() for t in active)  # type: ignore[return-value]
