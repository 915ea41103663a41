"""Colour spaces the colorizer works in: luminance plus two chroma channels (YCbCr, BT.601).

The generator predicts chroma only and borrows luminance from its input, so the output's
brightness is the source's exactly, at any resolution: chroma predicted at the model's
size is upsampled and put back under the full-resolution luminance. YCbCr is linear in
RGB, so the conversion is differentiable and exact both ways (up to the clamp to [0, 1]).
"""

from __future__ import annotations

import numpy as np
import torch

# BT.601 full-range: Y = 0.299 R + 0.587 G + 0.114 B; Cb, Cr centred on 0 (range ±0.5)
_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.168736, -0.331264, 0.5],
                            [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC)


def rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` RGB in [0, 1] → (Y in [0, 1], Cb, Cr in [−0.5, 0.5])."""
    m = _RGB_TO_YCC.to(rgb)
    return torch.einsum("ij,...jhw->...ihw", m, rgb)


def ycc_to_rgb(ycc: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycc`; clamped to [0, 1] unless told not to."""
    m = _YCC_TO_RGB.to(ycc)
    rgb = torch.einsum("ij,...jhw->...ihw", m, ycc)
    return rgb.clamp(0.0, 1.0) if clamp else rgb


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` → ``[..., 1, H, W]`` luma (the grayscale a colorizer is given)."""
    return rgb_to_ycc(rgb)[..., :1, :, :]


def compose(gray: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB from luminance ``[..., 1, H, W]`` and chroma ``[..., 2, H, W]``."""
    return ycc_to_rgb(torch.cat([gray, chroma], dim=-3))


def gray_uint8(rgb: np.ndarray) -> np.ndarray:
    """``H×W×3`` uint8 RGB → ``H×W`` uint8 luma (rounded), as frames are fed to flow."""
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)
