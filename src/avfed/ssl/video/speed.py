"""Playback-speed prediction (as in SpeedNet and pace prediction; FedVSSL's "Speed").

A clip is cut at one of several playback rates — every frame, every 2nd, every 4th —
and the network names the rate. Appearance does not change with speed, so the
backbone must look at how fast things move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avfed.ssl.video.base import PretextModel, VideoPretext, check_positive, register_pretext
from avfed.ssl.video.clips import clip_span, gather_clips
from avfed.video.augment import ClipAugment


class Speed(VideoPretext):
    name = "speed"

    def __init__(self, backbone: nn.Module, augment: ClipAugment, clip_len: int = 4,
                 rates: tuple[int, ...] = (1, 2, 4), share_heads: bool = True) -> None:
        super().__init__(augment)
        self.clip_len = check_positive("clip_len", clip_len)
        self.rates = tuple(int(r) for r in rates)
        if len(self.rates) < 2 or min(self.rates) < 1 or len(set(self.rates)) != len(self.rates):
            raise ValueError(f"rates must be >= 2 distinct positive ints, got {rates}")
        head = nn.Linear(backbone.num_features, len(self.rates))
        self.model = PretextModel(backbone, head, share_heads)

    def required_frames(self) -> int:
        return clip_span(self.clip_len, max(self.rates))

    def make_batch(self, videos: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented clips, each at a random rate, and that rate's index in ``rates``."""
        b, t = len(videos), videos.shape[2]
        labels = torch.randint(0, len(self.rates), (b,), generator=generator)
        stride = torch.tensor(self.rates)[labels]
        spans = (self.clip_len - 1) * stride + 1
        # each clip starts uniformly among the starts that fit its own span
        starts = (torch.rand(b, generator=generator) * (t - spans + 1)).long()
        clips = gather_clips(videos, starts, self.clip_len, stride)
        return self.augment(clips, generator), labels

    def batch_loss(self, clips: torch.Tensor, labels: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.model.head(self.model.backbone(clips))
        labels = labels.to(logits.device)
        accuracy = float((logits.argmax(1) == labels).float().mean())
        return F.cross_entropy(logits, labels), {"pretext_acc": accuracy}


@register_pretext("speed", "playback-rate classification; args: clip_len=4, rates=[1,2,4], "
                           "share_heads")
def speed(backbone: nn.Module, augment: ClipAugment, clip_len: int = 4,
          rates: list[int] | None = None, share_heads: bool = True) -> Speed:
    return Speed(backbone, augment, clip_len, tuple(rates or (1, 2, 4)), share_heads)
