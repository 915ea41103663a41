"""Frozen-feature extraction shared by every evaluation protocol."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module, inputs: torch.Tensor, batch_size: int = 256, device: str = "cpu"
) -> torch.Tensor:
    """Run ``encoder`` in eval mode over ``inputs`` in batches; returns CPU features."""
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [
            encoder(inputs[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(inputs), batch_size)
        ]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)
