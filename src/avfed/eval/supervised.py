"""Supervised upper bound: the same backbone trained end to end with labels.

SSL comparisons need a ceiling: what the architecture reaches on this data when the
labels are used for training. The backbone and a linear classifier are trained with
cross-entropy on augmented views of the pooled training split (same augmentation
pipeline as the SSL runs), then scored on the held-out split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avfed.data.types import ImageSet
from avfed.eval.features import extract_features
from avfed.models.multimodal import use_modality


def supervised_accuracy(
    backbone: nn.Module,
    train: ImageSet,
    test: ImageSet,
    augment: nn.Module,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    modality: str | None = None,
    seed: int = 0,
) -> float:
    """Top-1 test accuracy after supervised training of ``backbone`` + a linear head."""
    if len(train) < 2:
        raise ValueError(f"need at least 2 training examples, got {len(train)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    head = nn.Linear(backbone.num_features, num_classes)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    labels = torch.as_tensor(train.labels, dtype=torch.long)
    batch = min(batch_size, len(train))
    backbone.train()
    with use_modality(backbone, modality):
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=generator)
            for b in range(max(1, len(train) // batch)):
                idx = order[b * batch : (b + 1) * batch]
                with torch.no_grad():
                    x = augment(train.images[idx])
                loss = F.cross_entropy(head(backbone(x)), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        feats = extract_features(backbone, test.images)
    with torch.no_grad():
        predicted = head(feats).argmax(1).numpy()
    return float((predicted == test.labels).mean())
