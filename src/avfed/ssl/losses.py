"""Self-supervised losses, kept apart from heads and methods so each can be reused."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over 2N views.

    Each view's positive is its sibling view; the other 2N − 2 views are negatives.
    With perfectly aligned positives and orthogonal negatives the loss is
    ``-log(e^{1/τ} / (e^{1/τ} + 2N − 2))``; with all embeddings collinear it equals
    ``ln(2N − 1)`` whatever τ is, a property the tests check.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent expects two [N, D] tensors, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError("nt_xent needs at least 2 pairs in a batch to have negatives")
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is never its own negative
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)
