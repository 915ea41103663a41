"""Aggregation rules as pure functions on ``{name: ndarray}`` states.

Kept apart from the Flower strategies that call them so each rule can be checked
against a hand computation, and reused outside a federation. Every function takes the
clients' states in a fixed order and returns a new state; none modifies its inputs.

Tensors that are not floating point (BatchNorm's ``num_batches_tracked``) carry no
direction to weigh, so every rule averages them by example count, as FedAvg does, rounds
the mean to the nearest integer and returns it in the tensor's own dtype (a counter stays
an integer counter; it is never loss-weighted or mixed with the previous global model).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

State = dict[str, np.ndarray]


def _check(states: Sequence[State], weights: Sequence[float]) -> np.ndarray:
    if not states:
        raise ValueError("cannot aggregate zero client states")
    if len(weights) != len(states):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(w)}")
    return w / w.sum()


def weighted_mean(states: Sequence[State], weights: Sequence[float]) -> State:
    """Σ_k w_k · state_k with weights normalised to sum to 1 (FedAvg when w = examples).

    Every tensor keeps the dtype of the first client's; non-float tensors are rounded to
    the nearest integer first.
    """
    w = _check(states, weights)
    out: State = {}
    for key in states[0]:
        mean = sum(wk * s[key].astype(np.float64) for wk, s in zip(w, states, strict=True))
        dtype = states[0][key].dtype
        out[key] = np.asarray(mean if _is_float(states[0][key]) else np.rint(mean)).astype(dtype)
    return out


def _is_float(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b) of the flattened tensors; 1 when either is all zeros (no direction)."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = np.linalg.norm(a64) * np.linalg.norm(b64)
    if norm == 0:
        return 1.0
    return float(np.dot(a64, b64) / norm)


def ldawa(states: Sequence[State], global_state: State, num_examples: Sequence[float],
          *, normalize: bool = False) -> State:
    """L-DAWA: per tensor, weigh each client by its angular agreement with the global model.

    δ_k^l = min(cos(w_k^l, w_g^l), 1) with the previous global tensor w_g^l, then

    - ``normalize=False`` (the authors' code): w^l = (1/K) Σ_k δ_k^l w_k^l — an
      unweighted mean that is *not* divided by Σδ, so divergent clients also shrink the
      tensor's norm;
    - ``normalize=True``: w^l = Σ_k δ_k^l w_k^l / Σ_k δ_k^l, a convex combination.

    Non-float tensors are averaged by example count.
    """
    _check(states, num_examples)
    fedavg = weighted_mean(states, num_examples)
    out: State = {}
    for key, reference in global_state.items():
        if not _is_float(reference) or reference.ndim == 0:
            out[key] = fedavg[key]
            continue
        deltas = np.array([min(cosine(s[key], reference), 1.0) for s in states])
        total = sum(d * s[key].astype(np.float64) for d, s in zip(deltas, states, strict=True))
        if normalize:
            denominator = deltas.sum()
            out[key] = (total / denominator if abs(denominator) > 1e-12 else fedavg[key])
        else:
            out[key] = total / len(states)
        out[key] = np.asarray(out[key]).astype(reference.dtype)
    return out


def check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def loss_weights(losses: Sequence[float]) -> np.ndarray:
    """FedVSSL's exp(−L_k) / Σ_j exp(−L_j), computed stably (a softmax of −L)."""
    neg = -np.asarray(losses, dtype=np.float64)
    if not np.isfinite(neg).all():
        raise ValueError(f"client losses must be finite, got {list(losses)}")
    e = np.exp(neg - neg.max())
    return e / e.sum()


def fedvssl(states: Sequence[State], num_examples: Sequence[float], losses: Sequence[float],
            previous_global: State | None, *, alpha: float, beta: float) -> State:
    """FedVSSL: element-wise α-mix of loss-weighted and FedAvg averages, then SWA.

    w_agg = α · Σ_k softmax(−L)_k w_k + (1 − α) · Σ_k (n_k / n) w_k   (element-wise), and
    w_r = (1 − β/2) · w_agg + (β/2) · w_{r−1}, so β = 1 is the paper's SWA
    (0.5 · w_agg + 0.5 · w_{r−1}) and β = 0 turns it off. ``previous_global=None`` skips
    the SWA step (the strategy passes None in round 1, as the authors' code starts SWA in
    round 2).

    Floating tensors keep their dtype. Integer tensors (``num_batches_tracked``) are not
    loss-weighted or averaged with w_{r−1}: they are the example-weighted mean of the
    clients rounded to the nearest integer, in their own dtype, as in
    :func:`weighted_mean`.
    """
    check_fraction("alpha", alpha)
    check_fraction("beta", beta)
    if len(losses) != len(states):
        raise ValueError(f"{len(states)} states but {len(losses)} losses")
    by_size = weighted_mean(states, num_examples)
    floats = [k for k in by_size if _is_float(states[0][k])]
    if not floats:
        return by_size
    by_loss = weighted_mean([{k: s[k] for k in floats} for s in states],
                            list(loss_weights(losses)))
    out: State = dict(by_size)
    for k in floats:
        mixed = alpha * by_loss[k].astype(np.float64) + (1 - alpha) * by_size[k].astype(
            np.float64)
        if beta > 0 and previous_global is not None:
            mixed = (1 - beta / 2) * mixed + (beta / 2) * previous_global[k].astype(np.float64)
        out[k] = np.asarray(mixed).astype(states[0][k].dtype)
    return out
