"""What a video pretext task is: a model with the backbone, and a loss on stored videos.

A pretext owns the whole path from a batch of stored videos to a scalar loss: which
clips it cuts (three in a shuffled order, one at a random playback rate, two of the
same video …), how it augments them, what target it makes, and which head scores it.
Its ``model`` is an :class:`~avfed.ssl.base.SSLMethod` whose backbone sits under
``backbone.`` (the prefix FedVSSL's partial update overwrites) and whose
``shared_prefixes`` say what is sent to the server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from avfed.registry import Registry
from avfed.ssl.base import SSLMethod
from avfed.video.augment import ClipAugment


def check_positive(name: str, value: int, minimum: int = 1) -> int:
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class PretextModel(SSLMethod):
    """The backbone and one head (a classifier or a regressor of the pretext target).

    Shared with the server: backbone and head (``share_heads=True``, as FedVSSL's
    server aggregates every tensor; its partial update then keeps each client's head),
    or the backbone alone (``share_heads=False``: the head never leaves the client).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, share_heads: bool = True) -> None:
        super().__init__(backbone)
        self.head = head
        self.shared_prefixes = ("",) if share_heads else ("backbone.",)


class VideoPretext(ABC):
    """A pretext task on videos ``[B, C, T, H, W]`` (uint8 or floats in ``[0, 1]``)."""

    name: str = "pretext"
    model: SSLMethod
    clip_len: int  # frames of the clips the backbone sees (evaluation uses the same)

    def __init__(self, augment: ClipAugment) -> None:
        self.augment = augment

    @abstractmethod
    def required_frames(self) -> int:
        """The fewest stored frames a video needs for one training example."""

    @abstractmethod
    def make_batch(self, videos: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pretext's inputs and targets for a batch of stored videos (clips cut and
        augmented; no network involved, so it runs outside any autocast)."""

    @abstractmethod
    def batch_loss(self, inputs: torch.Tensor, targets: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss on a prepared batch and extra numbers to report (a pretext accuracy)."""

    def loss(self, videos: torch.Tensor, generator: torch.Generator
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """:meth:`make_batch` then :meth:`batch_loss`."""
        return self.batch_loss(*self.make_batch(videos, generator))


# factories take the run's backbone and clip augmentation plus their task.args.pretext_args
pretext_registry: Registry[VideoPretext] = Registry("video pretext",
                                                    injected=("backbone", "augment"))
register_pretext = pretext_registry.register
