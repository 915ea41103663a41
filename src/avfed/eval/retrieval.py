"""Retrieval on frozen features: test clips query the training clips.

The protocol of FedVSSL (and of VCOP before it): cosine similarity between
L2-normalised features, queries are the test set and the gallery is the training set;
recall@k counts a query as a hit when any of its k nearest gallery items shares its
class. mAP averages, over queries, the average precision over the whole ranked
gallery, so it also rewards getting the relevant items near the top rather than one.

Ranking is by descending similarity, ties broken by gallery index (a stable sort), so
equal features always rank the same way. A query whose class is absent from the
gallery cannot hit: it counts as a miss in recall and as AP 0 in mAP (the convention
of torchmetrics' retrieval metrics), and the result says how many there were.
A k larger than the gallery is an error rather than silently clipped: recall@k on a
gallery of fewer than k items would read as a number comparable to published ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True)
class RetrievalResult:
    recall: dict[int, float]  # k -> fraction of queries with a same-class item in the top k
    mean_average_precision: float
    num_queries: int
    unmatched_queries: int  # queries whose class has no gallery item

    def as_dict(self) -> dict[str, float]:
        """Flat metric names for logs: ``recall@1`` …, ``mAP``."""
        metrics = {f"recall@{k}": v for k, v in self.recall.items()}
        metrics["mAP"] = self.mean_average_precision
        return metrics


def _as_labels(labels: np.ndarray | torch.Tensor, n: int, name: str) -> torch.Tensor:
    out = torch.as_tensor(np.asarray(labels)).long().flatten()
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} labels for {n} feature rows")
    return out


def _as_features(features: torch.Tensor, name: str) -> torch.Tensor:
    if features.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {tuple(features.shape)}")
    return F.normalize(features.float(), dim=1)


def rank_gallery(query_features: torch.Tensor, gallery_features: torch.Tensor) -> torch.Tensor:
    """Gallery indices per query, most similar first (cosine; ties by gallery index)."""
    sims = _as_features(query_features, "query_features") @ _as_features(
        gallery_features, "gallery_features").T
    return torch.sort(sims, dim=1, descending=True, stable=True).indices


def retrieval_metrics(
    query_features: torch.Tensor,
    query_labels: np.ndarray | torch.Tensor,
    gallery_features: torch.Tensor,
    gallery_labels: np.ndarray | torch.Tensor,
    ks: Iterable[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> RetrievalResult:
    """Recall@k for each ``k`` in ``ks`` and mAP, queries processed ``batch_size`` at a time."""
    ks = tuple(int(k) for k in ks)
    n_query, n_gallery = len(query_features), len(gallery_features)
    if n_gallery == 0:
        raise ValueError("retrieval needs a non-empty gallery (the training features)")
    if n_query == 0:
        raise ValueError("retrieval needs at least one query (a test feature)")
    if query_features.ndim == 2 and gallery_features.ndim == 2 and (
            query_features.shape[1] != gallery_features.shape[1]):
        raise ValueError(f"query features have dimension {query_features.shape[1]} but "
                         f"gallery features {gallery_features.shape[1]}")
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got {ks}")
    if max(ks) > n_gallery:
        raise ValueError(f"k={max(ks)} exceeds the gallery size {n_gallery}; pass ks no larger "
                         "than the number of gallery items")
    q_labels = _as_labels(query_labels, n_query, "query_labels")
    g_labels = _as_labels(gallery_labels, n_gallery, "gallery_labels")

    hits = dict.fromkeys(ks, 0.0)
    ap_sum = 0.0
    unmatched = 0
    positions = torch.arange(1, n_gallery + 1, dtype=torch.float32)
    for lo in range(0, n_query, batch_size):
        ranking = rank_gallery(query_features[lo : lo + batch_size], gallery_features)
        relevant = (g_labels[ranking] == q_labels[lo : lo + batch_size, None]).float()
        for k in ks:
            hits[k] += float(relevant[:, :k].amax(dim=1).sum())
        n_relevant = relevant.sum(dim=1)
        precision_at_hits = relevant * relevant.cumsum(dim=1) / positions
        ap = precision_at_hits.sum(dim=1) / n_relevant.clamp_min(1)
        ap_sum += float(ap.sum())
        unmatched += int((n_relevant == 0).sum())
    return RetrievalResult(
        recall={k: hits[k] / n_query for k in ks},
        mean_average_precision=ap_sum / n_query,
        num_queries=n_query,
        unmatched_queries=unmatched,
    )
