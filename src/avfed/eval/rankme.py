"""RankMe: a label-free score of embedding quality, used to pick a checkpoint.

During federated pretraining there are no labels on the server to choose the best
global round with. RankMe (Garrido et al., ICML 2023) scores a set of embeddings by
their effective rank, ``exp(H(p))`` with ``p_k = σ_k / Σσ + ε`` the normalised
singular values: collapsed or dimensionally-collapsed representations (the failure
modes of SSL) score low, and across checkpoints of one run it tracks downstream
accuracy well. It needs only unlabelled inputs, so it fits the federated setting.
"""

from __future__ import annotations

import torch

EPSILON = 1e-7


def rankme(features: torch.Tensor) -> float:
    """Effective rank of ``[N, D]`` features, between 1 and ``min(N, D)``."""
    if features.ndim != 2 or min(features.shape) < 1:
        raise ValueError(f"rankme expects [N, D] features, got shape {tuple(features.shape)}")
    singular = torch.linalg.svdvals(features.double())
    total = singular.sum()
    if total <= 0:
        return 1.0
    p = singular / total + EPSILON
    return float(torch.exp(-(p * p.log()).sum()))


def select_round(history: dict[int, dict[str, float]]) -> int | None:
    """The evaluated round (round 0, the initial model, excluded) with the best RankMe.

    With several modalities the scores (``image_rankme``, ``audio_rankme``) are
    averaged; ties go to the later round.
    """
    candidates = {}
    for rnd, scores in history.items():
        values = [v for k, v in scores.items() if k == "rankme" or k.endswith("_rankme")]
        if rnd > 0 and values:
            candidates[rnd] = sum(values) / len(values)
    if not candidates:
        return None
    return max(candidates, key=lambda r: (candidates[r], r))


def selection_summary(history: dict[int, dict[str, float]]) -> dict[str, object]:
    """What the run summary records about the label-free checkpoint choice."""
    chosen = select_round(history)
    if chosen is None:
        return {}
    return {"criterion": "rankme", "round": chosen, "scores": history[chosen]}
