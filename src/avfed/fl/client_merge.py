"""How a client combines the global weights it receives with its own previous model.

The strategy chooses the rule and sends it in the round's train config, so the client
app stays one program for every aggregation rule:

- ``replace`` (default): load the global weights (FedAvg and friends);
- ``partial`` (FedVSSL): overwrite only the tensors under the given prefixes (the
  backbone), keep the rest (pretext heads) from the client's own last model;
- ``fedema`` (Zhuang et al., ICLR 2022): w_k ← μ·w_k + (1 − μ)·w_g with the
  divergence-aware μ = min(λ·‖w_g − w_k‖, 1); λ is fixed or auto-scaled on the
  client's first merge so that μ equals ``fedema-tau`` there;
- ``fedu`` (Zhuang et al., ICCV 2021): the online network is replaced by the global one;
  the predictor is replaced only when the divergence ‖w_g − w_k‖ of the online network
  is below ``fedu-threshold``, otherwise the client keeps its own predictor.

FedProx's proximal term is added to the local loss when the strategy sends
``proximal-mu``. A client's first round (no previous model yet) always replaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from avfed.ssl.base import SSLMethod

Regularizer = Callable[[], torch.Tensor]
State = dict[str, torch.Tensor]
CLIENT_UPDATE_KEY = "client-update"
PARTIAL_PREFIXES_KEY = "partial-update-prefixes"
FEDEMA_TAU_KEY = "fedema-tau"
FEDEMA_LAMBDA_KEY = "fedema-lambda"
FEDU_THRESHOLD_KEY = "fedu-threshold"
PREDICTOR_PREFIX_KEY = "predictor-prefix"
PROXIMAL_MU_KEY = "proximal-mu"  # Flower's FedProx sends this
RULES = ("replace", "partial", "fedema", "fedu")


def _rule(config: Mapping[str, Any]) -> str:
    rule = str(config.get(CLIENT_UPDATE_KEY, "replace"))
    if rule not in RULES:
        raise ValueError(f"unknown client update rule '{rule}' in the train config; "
                         f"valid: {', '.join(RULES)}")
    return rule


def needs_local_state(config: Mapping[str, Any]) -> bool:
    """Whether the rule reads the client's previous model next round."""
    return _rule(config) != "replace"


def divergence(local: Mapping[str, torch.Tensor], global_: Mapping[str, torch.Tensor],
               keys: list[str]) -> float:
    """‖w_g − w_k‖₂ over the floating-point tensors named by ``keys``."""
    total = sum(float(((global_[k].double() - local[k].double()) ** 2).sum())
                for k in keys if global_[k].is_floating_point())
    return total**0.5


def partial_update(local: State, global_: State, prefixes: tuple[str, ...]) -> State:
    """The client's state with the tensors under ``prefixes`` taken from the global one."""
    if not any(k.startswith(prefixes) for k in global_):
        raise ValueError(f"no global tensor starts with {prefixes}; check partial_prefixes")
    return {k: (global_[k] if k.startswith(prefixes) else local[k]) for k in global_}


def ema_merge(local: State, global_: State, mu: float) -> State:
    """μ·local + (1 − μ)·global for float tensors; counters follow the global model."""
    return {k: (mu * local[k] + (1 - mu) * global_[k]) if global_[k].is_floating_point()
            else global_[k] for k in global_}


def fedema_mu(dist: float, lam: float) -> float:
    return min(lam * dist, 1.0)


def merge_global(local_shared: State, global_state: State, config: Mapping[str, Any], *,
                 first_round: bool, memory: dict[str, float] | None = None) -> State:
    """The shared weights this client starts its round from.

    ``memory`` is the client's persistent scalar store: FedEMA keeps its λ there, and
    the divergence-aware rules record the divergence they measured (``divergence``,
    reported with the client's metrics so thresholds can be tuned to the model).
    """
    store = memory if memory is not None else {}
    rule = _rule(config)
    if rule == "replace" or first_round:
        return global_state
    if rule == "partial":
        prefixes = tuple(p for p in str(config[PARTIAL_PREFIXES_KEY]).split(",") if p)
        return partial_update(local_shared, global_state, prefixes)
    keys = list(global_state)
    if rule == "fedema":
        dist = store["divergence"] = divergence(local_shared, global_state, keys)
        lam = float(config.get(FEDEMA_LAMBDA_KEY, 0.0))
        if lam <= 0:  # auto-scale once per client: μ = τ at its first merge
            if "fedema-lambda" not in store:
                tau = float(config.get(FEDEMA_TAU_KEY, 0.7))
                store["fedema-lambda"] = tau / dist if dist > 0 else 0.0
            lam = store["fedema-lambda"]
        return ema_merge(local_shared, global_state, fedema_mu(dist, lam))
    predictor = str(config.get(PREDICTOR_PREFIX_KEY, "predictor."))
    online = [k for k in keys if not k.startswith(predictor)]
    store["divergence"] = divergence(local_shared, global_state, online)
    keep_predictor = store["divergence"] >= float(config[FEDU_THRESHOLD_KEY])
    return {k: (local_shared[k] if keep_predictor and k.startswith(predictor)
                else global_state[k]) for k in keys}


def proximal_regularizer(
    method: SSLMethod, global_state: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> Regularizer | None:
    """FedProx's (μ/2)·‖w − w_global‖² over the shared parameters, or ``None``."""
    mu = float(config.get(PROXIMAL_MU_KEY, 0.0))
    if mu <= 0:
        return None
    params = dict(method.named_parameters())
    pairs = [(params[k], v.detach().to(params[k].device)) for k, v in global_state.items()
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
