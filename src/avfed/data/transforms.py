"""Batched SimCLR-style view augmentations on kornia, run on whole batches at once.

Augmenting a batch tensor in one call is several times faster on CPU than a per-image
PIL pipeline and keeps the client loop free of DataLoader workers (which would fight
Ray's actors for the same cores).
"""

from __future__ import annotations

import kornia.augmentation as K
from torch import nn

from avfed.config import AugmentConfig


def image_view_augmentation(cfg: AugmentConfig, image_size: int, channels: int) -> nn.Module:
    """One random view per call; colour ops that need RGB are dropped for 1-channel data."""
    s = cfg.jitter_strength
    ops: list[nn.Module] = [
        K.RandomResizedCrop((image_size, image_size), scale=(cfg.crop_scale_min, 1.0)),
    ]
    if cfg.hflip_p > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.hflip_p))
    if cfg.jitter_p > 0:
        if channels == 3:
            ops.append(K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=cfg.jitter_p))
        else:  # saturation and hue are undefined without colour
            ops.append(K.ColorJitter(0.8 * s, 0.8 * s, 0.0, 0.0, p=cfg.jitter_p))
    if cfg.channel_shuffle_p > 0 and channels == 3:
        ops.append(K.RandomChannelShuffle(p=cfg.channel_shuffle_p))
    if cfg.invert_p > 0:
        ops.append(K.RandomInvert(p=cfg.invert_p))
    if cfg.grayscale_p > 0 and channels == 3:
        ops.append(K.RandomGrayscale(p=cfg.grayscale_p))
    if cfg.blur_p > 0:
        kernel = max(3, (image_size // 10) | 1)  # ~10% of the side, odd, as in SimCLR
        ops.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=cfg.blur_p))
    return K.AugmentationSequential(*ops)
