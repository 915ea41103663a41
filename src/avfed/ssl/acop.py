"""ACOP, audio clip order prediction: the predictive audio pretext FASSL federates.

The log-mel is cut along time into ``num_clips`` consecutive clips, the clips are
shuffled by a random permutation per sample, each clip is embedded by the backbone,
and a head classifies which of the ``num_clips!`` permutations was applied. It is the
audio counterpart of VCOP (Xu et al., 2019): the head is VCOP's pairwise design (each
pair of clip features, concatenated, through one shared layer; all pairs then
concatenated, dropout, a linear classifier), with VCOP's 3 clips as the default.

Permutations are indexed in lexicographic order (``permutations(n)``), and label ``k``
means position ``i`` of the shuffled tuple holds original clip ``permutations(n)[k][i]``.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from avfed.ssl.base import SSLMethod
from avfed.ssl.registry import register_method

MAX_CLIPS = 6  # 720 classes; beyond this the head outgrows any backbone it sits on


def _check_num_clips(n: int) -> None:
    if not 2 <= n <= MAX_CLIPS:
        raise ValueError(f"num_clips must be in [2, {MAX_CLIPS}], got {n}")


def permutations(n: int) -> torch.Tensor:
    """All orders of ``n`` clips, ``[n!, n]``, in lexicographic order (row = class)."""
    _check_num_clips(n)
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


def encode_permutation(orders: torch.Tensor) -> torch.Tensor:
    """Class index (lexicographic rank, via the Lehmer code) of each row of ``orders``."""
    orders = torch.as_tensor(orders, dtype=torch.long)
    if orders.ndim == 1:
        return encode_permutation(orders[None])[0]
    n = orders.shape[1]
    _check_num_clips(n)
    expected = torch.arange(n, device=orders.device)
    if not torch.equal(orders.sort(dim=1).values, expected.expand_as(orders)):
        raise ValueError(f"each row must be a permutation of 0..{n - 1}, got {orders.tolist()}")
    # digit i: how many later entries are smaller than entry i
    smaller_later = (orders[:, None, :] < orders[:, :, None]).triu(diagonal=1).sum(dim=2)
    weights = torch.tensor([math.factorial(n - 1 - i) for i in range(n)], device=orders.device)
    return (smaller_later * weights).sum(dim=1)


def decode_permutation(index: torch.Tensor | int, n: int) -> torch.Tensor:
    """The clip order(s) of class index(es) ``index``, inverting :func:`encode_permutation`."""
    table = permutations(n)
    idx = torch.as_tensor(index, dtype=torch.long)
    if ((idx < 0) | (idx >= len(table))).any():
        raise ValueError(f"permutation index must be in [0, {len(table)}), got {idx.tolist()}")
    return table.to(idx.device)[idx]


class ClipOrderHead(nn.Module):
    """VCOP's pairwise head: ``[B, n, D]`` clip features → ``[B, n!]`` logits."""

    def __init__(self, feature_dim: int, hidden_dim: int, num_clips: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        _check_num_clips(num_clips)
        first, second = torch.triu_indices(num_clips, num_clips, offset=1)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)
        self.pair = nn.Sequential(nn.Linear(2 * feature_dim, hidden_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden_dim * len(first), math.factorial(num_clips))
        )

    def forward(self, clip_features: torch.Tensor) -> torch.Tensor:
        pairs = torch.cat([clip_features[:, self.first], clip_features[:, self.second]], dim=2)
        return self.classifier(self.pair(pairs).flatten(1))


class ACOP(SSLMethod):
    """Clip order prediction on log-mels ``[B, C, F, T]``.

    Clips are ``clip_frames`` wide (default: as wide as fits) with ``gap_frames``
    between them, the tuple centred in time. A gap keeps the task from being solved by
    matching the frames either side of a cut. Both views are used as independent
    samples, each with its own permutation: the task needs one view, but the client
    draws two, and using both doubles the samples per step (``use_both_views=False``
    uses ``view1`` alone). ``embed`` runs the backbone on the whole log-mel.

    ``projection_dim`` is accepted so every method takes the recipe's ``ssl.*`` sizes;
    ACOP has no projector (its head ends in ``num_clips!`` logits). ``hidden_dim`` is
    the width of the pairwise layer. ``share_head=False`` keeps the order head local
    to each client and exchanges the backbone only.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        num_clips: int = 3,
        clip_frames: int | None = None,
        gap_frames: int = 0,
        dropout: float = 0.5,
        use_both_views: bool = True,
        share_head: bool = True,
    ) -> None:
        super().__init__(backbone)
        _check_num_clips(num_clips)
        if clip_frames is not None and clip_frames < 1:
            raise ValueError(f"ssl.args.clip_frames must be >= 1, got {clip_frames}")
        if gap_frames < 0:
            raise ValueError(f"ssl.args.gap_frames must be >= 0, got {gap_frames}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ssl.args.dropout must be in [0, 1), got {dropout}")
        self.num_clips = num_clips
        self.clip_frames = clip_frames
        self.gap_frames = gap_frames
        self.use_both_views = use_both_views
        self.head = ClipOrderHead(backbone.num_features, hidden_dim, num_clips, dropout)
        self.register_buffer("orders", permutations(num_clips), persistent=False)
        if not share_head:
            self.shared_prefixes = ("backbone.",)

    def clip_tuple(self, x: torch.Tensor) -> torch.Tensor:
        """Cut ``[B, C, F, T]`` into ``[B, n, C, F, clip_frames]``, clips in time order."""
        if x.ndim != 4:
            raise ValueError(f"ACOP expects log-mels [B, C, F, T], got shape {tuple(x.shape)}")
        n, gap, total = self.num_clips, self.gap_frames, x.shape[3]
        width = self.clip_frames or (total - (n - 1) * gap) // n
        span = n * width + (n - 1) * gap
        if width < 1 or span > total:
            raise ValueError(
                f"ACOP cannot cut {n} clips of {self.clip_frames or 'auto'} frames with "
                f"{gap}-frame gaps from {total} frames; lower ssl.args.num_clips, "
                "clip_frames or gap_frames, or use longer inputs"
            )
        start = (total - span) // 2
        clips = [x[..., start + i * (width + gap) : start + i * (width + gap) + width]
                 for i in range(n)]
        return torch.stack(clips, dim=1)

    def shuffle_clips(self, clips: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Reorder each tuple by the permutation its label names (see module docstring)."""
        order = self.orders[labels]  # [B, n]
        rows = torch.arange(len(clips), device=clips.device)[:, None]
        return clips[rows, order]

    def order_logits(self, shuffled: torch.Tensor) -> torch.Tensor:
        """``[B, n, C, F, Tc]`` shuffled tuples → ``[B, n!]`` logits, all clips in one pass."""
        batch, n = shuffled.shape[:2]
        features = self.backbone(shuffled.flatten(0, 1)).view(batch, n, -1)
        return self.head(features)

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        x = torch.cat([view1, view2]) if self.use_both_views else view1
        labels = torch.randint(len(self.orders), (len(x),)).to(x.device)
        shuffled = self.shuffle_clips(self.clip_tuple(x), labels)
        return F.cross_entropy(self.order_logits(shuffled), labels)


@register_method("acop", "ACOP: predict the order of shuffled log-mel clips (VCOP for audio)")
def acop(backbone: nn.Module, **kwargs: object) -> ACOP:
    return ACOP(backbone, **kwargs)  # type: ignore[arg-type]
