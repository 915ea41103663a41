"""Clip augmentations on batches of videos ``[B, C, T, H, W]`` in ``[0, 1]``.

A video view must change *appearance* without inventing *motion*: if the crop, the
flip or the colour changed from frame to frame, the network could read the change as
movement, and every motion-based pretext task (clip order, playback speed, tracking)
would be corrupted. So each clip draws one set of parameters, applied to all of its
frames, and different clips of a batch draw different ones (as torchvision's
``VideoClip`` transforms and the CVRL recipe do).

Everything is one batched tensor operation per op — the crop and the flip are a single
``grid_sample`` with one affine matrix per clip, over the frames stacked as channels —
and all randomness comes from a ``torch.Generator``, so a view is reproducible from a
seed whatever else the process draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avfed.config import AugmentConfig

# ITU-R BT.601 luma weights, as torchvision's and kornia's grayscale use
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ClipAugmentConfig:
    """What one random view of a clip may do; probabilities are per clip."""

    size: int  # output side (square frames)
    crop_scale: tuple[float, float] = (0.3, 1.0)  # area fraction of the crop box
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio of the crop box
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    grayscale_p: float = 0.2

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        for name in ("hflip_p", "jitter_p", "grayscale_p"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def crop_boxes(n: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator | None) -> torch.Tensor:
    """``[n, 4]`` boxes (centre x, centre y, width, height) as fractions of the frame.

    Area ~ U(scale), log aspect ~ U(log ratio); sides are clipped to the frame and the
    centre drawn so the box lies inside it (no padding enters the crop).
    """
    area = _uniform(n, *scale, generator)
    log_r = _uniform(n, float(torch.log(torch.tensor(ratio[0]))),
                     float(torch.log(torch.tensor(ratio[1]))), generator)
    aspect = log_r.exp()
    w = (area * aspect).sqrt().clamp(max=1.0)
    h = (area / aspect).sqrt().clamp(max=1.0)
    cx = w / 2 + (1 - w) * torch.rand(n, generator=generator)
    cy = h / 2 + (1 - h) * torch.rand(n, generator=generator)
    return torch.stack([cx, cy, w, h], dim=1)


def resized_crop(clips: torch.Tensor, boxes: torch.Tensor, size: int,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each clip to its box (same box on every frame), resize to ``size``², and
    mirror the clips where ``flip`` is true, in one bilinear ``grid_sample``."""
    b, c, t, _, _ = clips.shape
    cx, cy, w, h = boxes.to(clips.dtype).unbind(1)
    sign = torch.ones(b, dtype=clips.dtype) if flip is None else 1 - 2 * flip.to(clips.dtype)
    theta = torch.zeros(b, 2, 3, dtype=clips.dtype)
    theta[:, 0, 0] = w * sign  # x scale (negative = horizontal mirror)
    theta[:, 0, 2] = 2 * cx - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * cy - 1
    theta = theta.to(clips.device)
    grid = F.affine_grid(theta, [b, c * t, size, size], align_corners=False)
    out = F.grid_sample(clips.reshape(b, c * t, *clips.shape[-2:]), grid, mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out.reshape(b, c, t, size, size)


def grayscale(clips: torch.Tensor) -> torch.Tensor:
    """Luma of RGB clips, repeated over the 3 channels (1-channel clips are unchanged)."""
    if clips.shape[1] != 3:
        return clips
    weights = torch.tensor(_LUMA, dtype=clips.dtype, device=clips.device).view(1, 3, 1, 1, 1)
    return (clips * weights).sum(1, keepdim=True).expand_as(clips)


def color_jitter(clips: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                 saturation: torch.Tensor) -> torch.Tensor:
    """Scale brightness, contrast (about each clip's mean luma) and saturation by per-clip
    factors ``[B]``; a factor of 1 leaves the clip unchanged."""
    view = (-1, 1, 1, 1, 1)
    out = clips * brightness.view(view).to(clips)
    mean = grayscale(out).mean(dim=(1, 2, 3, 4), keepdim=True)
    out = mean + (out - mean) * contrast.view(view).to(clips)
    if clips.shape[1] == 3:
        gray = grayscale(out)
        out = gray + (out - gray) * saturation.view(view).to(clips)
    return out.clamp(0.0, 1.0)


@dataclass
class ClipParams:
    """The parameters one call drew, per clip (for tests and for reproducing a view)."""

    boxes: torch.Tensor  # [B, 4] centre x, centre y, width, height (fractions)
    flip: torch.Tensor  # [B] bool
    jitter: torch.Tensor  # [B, 3] brightness, contrast, saturation factors (1 = none)
    gray: torch.Tensor  # [B] bool


def draw_params(cfg: ClipAugmentConfig, batch: int,
                generator: torch.Generator | None) -> ClipParams:
    """One set of parameters per clip of a batch of ``batch``."""
    boxes = crop_boxes(batch, cfg.crop_scale, cfg.crop_ratio, generator)
    flip = torch.rand(batch, generator=generator) < cfg.hflip_p
    apply = torch.rand(batch, generator=generator) < cfg.jitter_p
    factors = torch.stack([_uniform(batch, 1 - s, 1 + s, generator)
                           for s in (cfg.brightness, cfg.contrast, cfg.saturation)], dim=1)
    jitter = torch.where(apply[:, None], factors, torch.ones_like(factors))
    gray = torch.rand(batch, generator=generator) < cfg.grayscale_p
    return ClipParams(boxes, flip, jitter, gray)


def apply_params(clips: torch.Tensor, params: ClipParams, size: int) -> torch.Tensor:
    out = resized_crop(clips, params.boxes, size, params.flip)
    out = color_jitter(out, *params.jitter.unbind(1))
    gray = params.gray.to(out.device).view(-1, 1, 1, 1, 1)
    return torch.where(gray, grayscale(out), out)


class ClipAugment(nn.Module):
    """A random view of each clip: resized crop, flip, colour jitter, grayscale.

    ``augment(clips, generator)`` takes ``[B, C, T, H, W]`` floats in ``[0, 1]`` (or
    uint8, scaled on the way in) and returns ``[B, C, T, size, size]``.
    """

    def __init__(self, cfg: ClipAugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, clips: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if clips.ndim != 5:
            raise ValueError(f"clip augmentations expect [B, C, T, H, W], got shape "
                             f"{tuple(clips.shape)}")
        clips = to_float(clips)
        return apply_params(clips, draw_params(self.cfg, len(clips), generator), self.cfg.size)


def to_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips → float32 in [0, 1]; float clips unchanged."""
    if clips.dtype == torch.uint8:
        return clips.float().div_(255.0)
    return clips.float() if not clips.is_floating_point() else clips


def center_resize(clips: torch.Tensor, size: int) -> torch.Tensor:
    """The evaluation view: the whole frame resized to ``size``² (no randomness)."""
    clips = to_float(clips)
    if clips.shape[-1] == size and clips.shape[-2] == size:
        return clips
    boxes = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(len(clips), 4)
    return resized_crop(clips, boxes, size)


def clip_view_augmentation(cfg: AugmentConfig, size: int) -> ClipAugment:
    """The recipe's ``augment.*`` as a clip augmentation (its image fields, read per clip;
    blur is not applied to clips)."""
    strength = 0.8 * cfg.jitter_strength  # SimCLR's colour strength, as the image views use
    return ClipAugment(ClipAugmentConfig(
        size=size, crop_scale=(cfg.crop_scale_min, 1.0), hflip_p=cfg.hflip_p,
        jitter_p=cfg.jitter_p, brightness=strength, contrast=strength, saturation=strength,
        grayscale_p=cfg.grayscale_p))
