"""CtP, "catch the patch" (Wang et al., ICCV 2021), FedVSSL's main pretext task.

A small patch — cut from another video of the batch, so it looks like scene content —
is pasted onto the clip (its contrast stretched to the full range, so that on the dim
photographs of small clips it is findable at all; without it a tiny network learns
nothing in a few hundred steps) and moved along a random path (constant velocity with
reflections at the frame border, drawn per clip); the network regresses the patch
centre in every frame. Tracking an object that looks like any other region needs
motion, which is what the backbone should learn. The original tracks with a head on
the spatio-temporal feature map and several patches; this lightweight form keeps one
patch and regresses the ``2·L`` per-frame coordinates (normalised to ``[-1, 1]``) from
the backbone's feature map — average-pooled to a small fixed grid, so where things are
survives, which a globally pooled vector would have to smuggle through its channels —
with a small MLP and a smooth-L1 loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avfed.ssl.video.base import PretextModel, VideoPretext, check_positive, register_pretext
from avfed.ssl.video.clips import gather_clips, random_starts
from avfed.video.augment import ClipAugment

# (time, height, width) cells the feature map is pooled to before the regression head
TRACK_GRID = (2, 4, 4)


def random_tracks(batch: int, clip_len: int, size: int, patch: int, max_speed: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """``[B, L, 2]`` integer top-left corners (x, y) of a patch moving at a constant
    random velocity (up to ``max_speed`` px/frame per axis), reflected at the border."""
    room = size - patch
    if room < 1:
        raise ValueError(f"a {patch}-pixel patch leaves no room to move in {size}-pixel frames")
    start = torch.rand(batch, 1, 2, generator=generator) * room
    velocity = (torch.rand(batch, 1, 2, generator=generator) * 2 - 1) * max_speed
    raw = start + velocity * torch.arange(clip_len).view(1, clip_len, 1)
    # reflect into [0, room]: a triangle wave of period 2·room
    folded = torch.remainder(raw, 2 * room)
    return torch.where(folded > room, 2 * room - folded, folded).round().long()


def paste_patches(clips: torch.Tensor, patches: torch.Tensor, corners: torch.Tensor
                  ) -> torch.Tensor:
    """Copy ``patches[b]`` (``[C, p, p]``) into every frame ``t`` of ``clips[b]`` at
    ``corners[b, t]`` (x, y); returns a new tensor."""
    out = clips.clone()
    p = patches.shape[-1]
    for b, track in enumerate(corners.tolist()):
        for t, (x, y) in enumerate(track):
            out[b, :, t, y : y + p, x : x + p] = patches[b]
    return out


def stretch_contrast(patches: torch.Tensor) -> torch.Tensor:
    """Each patch's values spread over ``[0, 1]`` (min → 0, max → 1; a flat patch → 0)."""
    low = patches.amin(dim=(1, 2, 3), keepdim=True)
    high = patches.amax(dim=(1, 2, 3), keepdim=True)
    return (patches - low) / (high - low).clamp_min(1e-6)


def centres(corners: torch.Tensor, patch: int, size: int) -> torch.Tensor:
    """Patch centres in normalised coordinates (−1 = left/top edge, 1 = right/bottom)."""
    return (corners.float() + patch / 2) * 2 / size - 1


class CtP(VideoPretext):
    name = "ctp"

    def __init__(self, backbone: nn.Module, augment: ClipAugment, clip_len: int = 8,
                 patch_fraction: float = 0.25, max_speed: float = 0.08, hidden_dim: int = 256,
                 share_heads: bool = True) -> None:
        super().__init__(augment)
        self.clip_len = check_positive("clip_len", clip_len)
        if not 0 < patch_fraction < 1:
            raise ValueError(f"patch_fraction must be in (0, 1), got {patch_fraction}")
        if max_speed < 0:
            raise ValueError(f"max_speed must be >= 0, got {max_speed}")
        self.patch_fraction, self.max_speed = float(patch_fraction), float(max_speed)
        if not hasattr(backbone, "feature_map"):
            raise ValueError(f"ctp tracks the patch on the backbone's feature map; "
                             f"{type(backbone).__name__} has no feature_map()")
        grid = TRACK_GRID[0] * TRACK_GRID[1] * TRACK_GRID[2]
        head = nn.Sequential(
            nn.AdaptiveAvgPool3d(TRACK_GRID), nn.Flatten(),
            nn.Linear(backbone.num_features * grid, check_positive("hidden_dim", hidden_dim)),
            nn.ReLU(inplace=True), nn.Linear(hidden_dim, 2 * self.clip_len))
        self.model = PretextModel(backbone, head, share_heads)

    def required_frames(self) -> int:
        return self.clip_len

    def make_batch(self, videos: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented clips with a moving patch pasted in, and its centres ``[B, L, 2]``."""
        b = len(videos)
        starts = random_starts(videos.shape[2], self.clip_len, b, generator)
        clips = self.augment(gather_clips(videos, starts, self.clip_len), generator)
        size = clips.shape[-1]
        p = max(2, round(self.patch_fraction * size))
        # the patch: a square of the next video's first frame, at a random place
        donor = torch.roll(clips[:, :, 0], shifts=1, dims=0)
        at = torch.randint(0, size - p + 1, (b, 2), generator=generator)
        patches = stretch_contrast(torch.stack([donor[i, :, y : y + p, x : x + p]
                                                for i, (x, y) in enumerate(at.tolist())]))
        corners = random_tracks(b, self.clip_len, size, p, self.max_speed * size, generator)
        return paste_patches(clips, patches, corners), centres(corners, p, size)

    def batch_loss(self, clips: torch.Tensor, target: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        feature_map = self.model.backbone.feature_map(clips)  # type: ignore[operator]
        target = target.to(clips.device)
        predicted = self.model.head(feature_map).view_as(target).float()
        error_px = float((predicted.detach() - target).abs().mean()) * clips.shape[-1] / 2
        return F.smooth_l1_loss(predicted, target, beta=0.1), {"pretext_err_px": error_px}


@register_pretext("ctp", "catch the patch: regress a pasted patch's per-frame centre (Wang et "
                         "al. 2021); args: clip_len=8, patch_fraction, max_speed, hidden_dim")
def ctp(backbone: nn.Module, augment: ClipAugment, clip_len: int = 8,
        patch_fraction: float = 0.25, max_speed: float = 0.08, hidden_dim: int = 256,
        share_heads: bool = True) -> CtP:
    return CtP(backbone, augment, clip_len, patch_fraction, max_speed, hidden_dim, share_heads)
