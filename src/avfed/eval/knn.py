"""Weighted k-nearest-neighbour classification on frozen, L2-normalised features.

The protocol of InstDisc / solo-learn: cosine similarity, the k nearest training
features vote for their class with weight ``exp(sim / T)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def knn_predict(
    train_features: torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    query_features: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Predicted class per query row."""
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if len(labels) != len(train_features):
        raise ValueError(f"{len(train_features)} train features but {len(labels)} labels")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(labels))
    classes = num_classes or int(labels.max()) + 1
    gallery = F.normalize(train_features.float(), dim=1)
    query = F.normalize(query_features.float(), dim=1)
    sims, idx = (query @ gallery.T).topk(k, dim=1)
    weights = (sims / temperature).exp()
    votes = torch.zeros(len(query), classes)
    votes.scatter_add_(1, labels[idx], weights)
    return votes.argmax(dim=1)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: np.ndarray,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    num_classes = int(max(np.max(train_labels), np.max(test_labels))) + 1
    pred = knn_predict(train_features, train_labels, test_features, k, temperature, num_classes)
    return float((pred.numpy() == np.asarray(test_labels)).mean())
