"""VCOP, clip order prediction (Xu et al., CVPR 2019).

Three clips are cut from a video in temporal order, ``interval`` frames apart, shuffled
by one of the 3! = 6 permutations, and the network names the permutation. Each clip
goes through the backbone alone; each pair of clip features (concatenated) through a
shared layer, and the three pair codes, concatenated, through dropout and a linear
classifier over the six orders — the paper's head (there 512 wide, dropout 0.5). The
three clips share one spatial augmentation so that no appearance change between them
hints at their order.
"""

from __future__ import annotations

from itertools import combinations, permutations

import torch
import torch.nn.functional as F
from torch import nn

from avfed.ssl.video.base import PretextModel, VideoPretext, check_positive, register_pretext
from avfed.ssl.video.clips import gather_clips, random_starts
from avfed.video.augment import ClipAugment

TUPLE = 3
ORDERS = tuple(permutations(range(TUPLE)))  # index → the order the clips are shown in


class OrderHead(nn.Module):
    """Pairwise-concatenated clip features → ReLU layer → concat → dropout → 6 orders."""

    def __init__(self, features: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.pairs = list(combinations(range(TUPLE), 2))
        self.pair = nn.Linear(2 * features, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(hidden * len(self.pairs), len(ORDERS))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [B, 3, D]
        codes = [F.relu(self.pair(torch.cat([feats[:, i], feats[:, j]], dim=1)))
                 for i, j in self.pairs]
        return self.classify(self.dropout(torch.cat(codes, dim=1)))


def ordered_tuple(videos: torch.Tensor, starts: torch.Tensor, clip_len: int,
                  interval: int) -> torch.Tensor:
    """``[B, 3, C, L, H, W]``: three clips in temporal order from ``starts``."""
    step = clip_len + interval
    return torch.stack([gather_clips(videos, starts + i * step, clip_len)
                        for i in range(TUPLE)], dim=1)


def shuffle_tuple(clips: torch.Tensor, order_index: torch.Tensor) -> torch.Tensor:
    """Show video ``b``'s clips in the order ``ORDERS[order_index[b]]``."""
    orders = torch.tensor(ORDERS, device=clips.device)[order_index.to(clips.device)]
    return clips[torch.arange(len(clips), device=clips.device)[:, None], orders]


class VCOP(VideoPretext):
    name = "vcop"

    def __init__(self, backbone: nn.Module, augment: ClipAugment, clip_len: int = 4,
                 interval: int = 2, hidden_dim: int = 128, dropout: float = 0.5,
                 share_heads: bool = True) -> None:
        super().__init__(augment)
        self.clip_len = check_positive("clip_len", clip_len)
        self.interval = check_positive("interval", interval, 0)
        head = OrderHead(backbone.num_features, check_positive("hidden_dim", hidden_dim),
                         dropout)
        self.model = PretextModel(backbone, head, share_heads)

    def required_frames(self) -> int:
        return TUPLE * self.clip_len + (TUPLE - 1) * self.interval

    def make_batch(self, videos: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffled tuples ``[B, 3, C, L, H, W]`` (augmented alike) and their order index."""
        b = len(videos)
        starts = random_starts(videos.shape[2], self.required_frames(), b, generator)
        clips = ordered_tuple(videos, starts, self.clip_len, self.interval)
        _, _, c, length, h, w = clips.shape
        # one augmentation per tuple: the three clips laid end to end in time
        joined = clips.permute(0, 2, 1, 3, 4, 5).reshape(b, c, TUPLE * length, h, w)
        joined = self.augment(joined, generator)
        size = joined.shape[-1]
        clips = joined.reshape(b, c, TUPLE, length, size, size).permute(0, 2, 1, 3, 4, 5)
        labels = torch.randint(0, len(ORDERS), (b,), generator=generator)
        return shuffle_tuple(clips, labels), labels

    def batch_loss(self, tuples: torch.Tensor, labels: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        b = len(tuples)
        feats = self.model.backbone(tuples.flatten(0, 1)).view(b, TUPLE, -1)
        logits = self.model.head(feats)
        labels = labels.to(logits.device)
        accuracy = float((logits.argmax(1) == labels).float().mean())
        return F.cross_entropy(logits, labels), {"pretext_acc": accuracy}


@register_pretext("vcop", "clip order prediction: 3 clips, 6 orders (Xu et al. 2019); args: "
                          "clip_len=4, interval=2, hidden_dim, dropout, share_heads")
def vcop(backbone: nn.Module, augment: ClipAugment, clip_len: int = 4, interval: int = 2,
         hidden_dim: int = 128, dropout: float = 0.5, share_heads: bool = True) -> VCOP:
    return VCOP(backbone, augment, clip_len, interval, hidden_dim, dropout, share_heads)
