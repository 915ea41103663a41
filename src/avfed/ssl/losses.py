"""Self-supervised losses, kept apart from heads and methods so each can be reused.

Every loss here runs in fp32, even inside a bf16 / fp16 autocast region
(:func:`avfed.precision.in_fp32`): similarity losses divide cosines by a temperature
and exponentiate them, and bf16 keeps about three significant digits, so at τ = 0.2 a
logit carries a rounding error of ~0.02, as large as the differences between hard
negatives. Their matrix products are tiny beside the backbone's, so fp32 costs nothing
measurable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avfed.precision import in_fp32


@in_fp32
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


def _check_pairs(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{name} expects two [N, D] tensors of one shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


@in_fp32
def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's ``D(p, z) = −cos(p, z)``, averaged over the batch; in [−1, 1].

    Gradients flow into both arguments: the stop-gradient on the target branch is
    the method's decision (SimSiam detaches ``z``), not the loss's.
    """
    _check_pairs("negative_cosine", p, z)
    return -F.cosine_similarity(p, z, dim=1).mean()


@in_fp32
def normalized_mse(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss ``‖p/‖p‖ − z/‖z‖‖² = 2 − 2·cos(p, z)``, batch mean; in [0, 4].

    It equals ``2 + 2·negative_cosine(p, z)``: the same minimiser as SimSiam's loss,
    written on the scale the BYOL paper reports.
    """
    _check_pairs("normalized_mse", p, z)
    return 2.0 - 2.0 * F.cosine_similarity(p, z, dim=1).mean()


@in_fp32
def info_nce_with_queue(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """MoCo's InfoNCE: each query against its key (positive) and a queue of negatives.

    ``q`` and ``k`` are ``[N, D]``, ``queue`` is ``[K, D]`` (one past key per row); all
    are L2-normalised here, so callers may pass raw projections. Logits are cosine
    similarities over ``temperature`` with the positive in column 0. When the query,
    its key and every queued key coincide the loss is ``ln(K + 1)`` whatever the
    temperature, the memory-bank counterpart of NT-Xent's ``ln(2N − 1)``.
    """
    _check_pairs("info_nce_with_queue", q, k)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1] or len(queue) == 0:
        raise ValueError(f"info_nce_with_queue expects a non-empty queue [K, {q.shape[1]}], "
                         f"got {tuple(queue.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    negatives = F.normalize(queue, dim=1).to(q.dtype)
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ negatives.T], dim=1) / temperature
    targets = torch.zeros(len(q), dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets)


@in_fp32
def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins' ``C``: correlation between every dimension of ``z1`` and of ``z2``.

    Each dimension is standardised over the batch (mean 0, biased variance 1, ``eps``
    added to the variance as batch norm does), then ``C = z1ᵀ z2 / N``, so ``C_ij`` is
    the Pearson correlation of dimension i of one view with dimension j of the other.
    """
    _check_pairs("cross_correlation", z1, z2)
    if len(z1) < 2:
        raise ValueError("cross_correlation needs a batch of at least 2 to standardise")

    def standardise(z: torch.Tensor) -> torch.Tensor:
        centred = z - z.mean(dim=0)
        return centred / torch.sqrt(centred.pow(2).mean(dim=0) + eps)

    return standardise(z1).T @ standardise(z2) / len(z1)


@in_fp32
def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5e-3
) -> torch.Tensor:
    """``Σ_i (1 − C_ii)² + λ · Σ_{i≠j} C_ij²`` over the cross-correlation ``C``.

    The first term makes each dimension invariant to the augmentation, the second
    decorrelates dimensions so they do not all carry the same information. λ = 5e-3 is
    the paper's value; the sum is not divided by the dimension, as in the paper, so the
    loss grows with the projector's output size.
    """
    if lambda_offdiag < 0:
        raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
    c = cross_correlation(z1, z2)
    diagonal = torch.diagonal(c)
    on_diagonal = (1.0 - diagonal).pow(2).sum()
    off_diagonal = c.pow(2).sum() - diagonal.pow(2).sum()
    return on_diagonal + lambda_offdiag * off_diagonal
