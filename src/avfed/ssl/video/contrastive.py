"""Video SimCLR and BYOL: two clips of one video are a positive pair (as CVRL, ρBYOL).

Two clips are cut from independent random starts of the same video and augmented
independently (each clip with one crop/colour for all of its frames), so the
representation must be invariant to *when* in the video and *how* it is seen, not to
what happens. The loss and heads are the image methods' (:mod:`avfed.ssl`), run on
clips: their state (``backbone.``, ``projector.``, BYOL's local ``target.``) and what
they share are theirs.
"""

from __future__ import annotations

import torch
from torch import nn

from avfed.ssl.registry import create
from avfed.ssl.video.base import VideoPretext, check_positive, register_pretext
from avfed.ssl.video.clips import gather_clips, random_starts
from avfed.video.augment import ClipAugment


class ClipPairs(VideoPretext):
    """Any two-view SSL method of :mod:`avfed.ssl` on two clips per video."""

    def __init__(self, method: str, backbone: nn.Module, augment: ClipAugment, clip_len: int,
                 **method_args: object) -> None:
        super().__init__(augment)
        self.name = method
        self.clip_len = check_positive("clip_len", clip_len)
        self.model = create(method, backbone, **method_args)

    def required_frames(self) -> int:
        return self.clip_len

    def make_batch(self, videos: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = len(videos), videos.shape[2]
        views = []
        for _ in range(2):
            starts = random_starts(t, self.clip_len, b, generator)
            views.append(self.augment(gather_clips(videos, starts, self.clip_len), generator))
        return views[0], views[1]

    def batch_loss(self, view1: torch.Tensor, view2: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_loss(view1, view2), {}


@register_pretext("simclr", "video SimCLR: two clips of one video are positives; args: "
                            "clip_len=8, projection_dim, hidden_dim, temperature, share_heads")
def simclr(backbone: nn.Module, augment: ClipAugment, clip_len: int = 8,
           projection_dim: int = 128, hidden_dim: int = 512, temperature: float = 0.5,
           share_heads: bool = True) -> ClipPairs:
    return ClipPairs("simclr", backbone, augment, clip_len, projection_dim=projection_dim,
                     hidden_dim=hidden_dim, temperature=temperature, share_heads=share_heads)


@register_pretext("byol", "video BYOL: two clips of one video, momentum target kept on the "
                          "client; args: clip_len=8, projection_dim, hidden_dim, momentum")
def byol(backbone: nn.Module, augment: ClipAugment, clip_len: int = 8,
         projection_dim: int = 128, hidden_dim: int = 512, momentum: float = 0.99,
         share_heads: bool = True) -> ClipPairs:
    return ClipPairs("byol", backbone, augment, clip_len, projection_dim=projection_dim,
                     hidden_dim=hidden_dim, momentum=momentum, share_heads=share_heads)
