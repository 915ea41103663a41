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
from torch import nn

from avfed.fl.protocol import (
    CLIENT_UPDATE_KEY,
    FEDEMA_LAMBDA_KEY,
    FEDEMA_TAU_KEY,
    FEDU_THRESHOLD_KEY,
    PARTIAL_PREFIXES_KEY,
    PREDICTOR_PREFIX_KEY,
    PROXIMAL_MU_KEY,
)
from avfed.registry import Registry
from avfed.tasks.base import Regularizer

State = dict[str, torch.Tensor]
# A rule maps (local shared state, global state, train config, client memory) to the
# state the client starts its round from. Strategies name one in their train config.
MergeRule = Callable[[State, State, Mapping[str, Any], dict[str, float]], State]
merge_rule_registry: Registry[State] = Registry("client merge rule")
register_merge_rule = merge_rule_registry.register


def rule_name(config: Mapping[str, Any]) -> str:
    """The rule a train config asks for (``replace`` when it names none)."""
    rule = str(config.get(CLIENT_UPDATE_KEY, "replace"))
    merge_rule_registry.get(rule)  # raises with the valid names when unknown
    return rule


def needs_local_state(config: Mapping[str, Any]) -> bool:
    """Whether the rule reads the client's previous model next round."""
    return rule_name(config) != "replace"


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


@register_merge_rule("replace", "load the global weights (FedAvg and friends)")
def _replace(local: State, global_: State, config: Mapping[str, Any],
             memory: dict[str, float]) -> State:
    return global_


@register_merge_rule("partial", "FedVSSL's partial update: only tensors under the given "
                                "prefixes come from the global model")
def _partial(local: State, global_: State, config: Mapping[str, Any],
             memory: dict[str, float]) -> State:
    prefixes = tuple(p for p in str(config[PARTIAL_PREFIXES_KEY]).split(",") if p)
    return partial_update(local, global_, prefixes)


@register_merge_rule("fedema", "FedEMA: divergence-aware moving average of global into local")
def _fedema(local: State, global_: State, config: Mapping[str, Any],
            memory: dict[str, float]) -> State:
    dist = memory["divergence"] = divergence(local, global_, list(global_))
    lam = float(config.get(FEDEMA_LAMBDA_KEY, 0.0))
    if lam <= 0:  # auto-scale once per client: μ = τ at its first merge
        if "fedema-lambda" not in memory:
            tau = float(config.get(FEDEMA_TAU_KEY, 0.7))
            memory["fedema-lambda"] = tau / dist if dist > 0 else 0.0
        lam = memory["fedema-lambda"]
    return ema_merge(local, global_, fedema_mu(dist, lam))


@register_merge_rule("fedu", "FedU: keep the local predictor while the online network "
                             "diverges from the global one")
def _fedu(local: State, global_: State, config: Mapping[str, Any],
          memory: dict[str, float]) -> State:
    predictor = str(config.get(PREDICTOR_PREFIX_KEY, "predictor."))
    online = [k for k in global_ if not k.startswith(predictor)]
    memory["divergence"] = divergence(local, global_, online)
    keep_predictor = memory["divergence"] >= float(config[FEDU_THRESHOLD_KEY])
    return {k: (local[k] if keep_predictor and k.startswith(predictor) else global_[k])
            for k in global_}


def merge_global(local_shared: State, global_state: State, config: Mapping[str, Any], *,
                 first_round: bool, memory: dict[str, float] | None = None) -> State:
    """The shared weights this client starts its round from.

    ``memory`` is the client's persistent scalar store: FedEMA keeps its λ there, and
    the divergence-aware rules record the divergence they measured (``divergence``,
    reported with the client's metrics so thresholds can be tuned to the model). A
    client's first round (no previous model yet) always replaces.
    """
    rule = rule_name(config)
    if first_round:
        return global_state
    return merge_rule_registry.get(rule)(local_shared, global_state, config,
                                         memory if memory is not None else {})


def proximal_regularizer(
    method: nn.Module, global_state: Mapping[str, torch.Tensor], config: Mapping[str, Any]
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
