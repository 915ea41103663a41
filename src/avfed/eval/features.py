"""Frozen-feature extraction shared by every evaluation protocol."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module, inputs: torch.Tensor, batch_size: int = 256, device: str = "cpu",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``encoder`` in eval mode over ``inputs`` in batches; returns CPU features.

    ``forward`` replaces ``encoder(x)`` (e.g. an SSL method's ``embed``) while
    ``encoder`` is still the module put in eval mode.
    """
    was_training = encoder.training
    encoder.eval()
    run = forward or encoder
    try:
        chunks = [
            run(inputs[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(inputs), batch_size)
        ]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)
