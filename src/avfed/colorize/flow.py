"""Optical flow, backward warping and the masks VCGAN's losses and metrics use.

Flow comes from OpenCV (DIS, or Farneback), computed on grayscale frames: nothing to
download, and the same frames the colorizer is given (the paper uses PWC-Net).

Conventions: ``flow(a, b)`` is the flow *from a to b*: ``a(x) ≈ b(x + flow(x))``. To
bring frame *t − 1* onto frame *t* ("backward warping"), sample it at ``x + flow(t, t−1)``
with :func:`warp`. Flows are ``[..., 2, H, W]`` tensors in pixels, (dx, dy).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FLOW_METHODS = ("dis", "farneback")


def compute_flow(src: np.ndarray, dst: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow ``[2, H, W]`` (float32) from ``src`` to ``dst``, both ``H×W`` uint8 grayscale."""
    if src.shape != dst.shape or src.ndim != 2:
        raise ValueError(f"flow needs two H×W grayscale frames of one size, got {src.shape} "
                         f"and {dst.shape}")
    import cv2

    src, dst = np.ascontiguousarray(src, np.uint8), np.ascontiguousarray(dst, np.uint8)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(src, dst, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(src, dst, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    else:
        raise ValueError(f"unknown flow method '{method}'; valid: {', '.join(FLOW_METHODS)}")
    return np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32)


def to_gray_uint8(gray: torch.Tensor) -> np.ndarray:
    """``[1, H, W]`` or ``[H, W]`` luminance in [0, 1] → ``H×W`` uint8 for OpenCV."""
    array = gray.detach().cpu().float().numpy().reshape(gray.shape[-2:])
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def clip_flows(gray: torch.Tensor, pairs: list[tuple[int, int]], method: str = "dis"
               ) -> torch.Tensor:
    """Flows for ``pairs`` of frame indices ``(a, b)`` of one clip ``[T, 1, H, W]``:
    ``[len(pairs), 2, H, W]``, flow from frame a to frame b."""
    frames = [to_gray_uint8(g) for g in gray]
    return torch.from_numpy(np.stack([compute_flow(frames[a], frames[b], method)
                                      for a, b in pairs])) if pairs else torch.zeros(
        0, 2, *gray.shape[-2:])


def backward_pairs(num_frames: int) -> list[tuple[int, int]]:
    """``(t, t−1)`` for t = 1 … T−1: the flows recurrent colorization warps with."""
    return [(t, t - 1) for t in range(1, num_frames)]


def long_term_pairs(num_frames: int) -> list[tuple[int, int]]:
    """``(t, j)`` for every j ≤ t − 2: the dense long-term loss's pairs."""
    return [(t, j) for t in range(2, num_frames) for j in range(t - 1)]


def _base_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device),
                            torch.arange(w, dtype=like.dtype, device=like.device),
                            indexing="ij")
    return torch.stack([xs, ys])  # [2, H, W]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` ``[B, C, H, W]`` at ``x + flow(x)`` (bilinear, border padding)."""
    if image.shape[-2:] != flow.shape[-2:] or flow.shape[-3] != 2:
        raise ValueError(f"cannot warp an image {tuple(image.shape)} with a flow "
                         f"{tuple(flow.shape)}")
    h, w = image.shape[-2:]
    pos = _base_grid(h, w, flow) + flow.to(image.dtype)
    gx = 2.0 * pos[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * pos[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def consistency_mask(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Pixels of frame *t* where the warp error is defined: ``[B, 1, H, W]`` of 0/1.

    ``backward`` is the flow from *t* to *t − 1*, ``forward`` from *t − 1* to *t*. A
    pixel is occluded when following one flow and then the other does not come back
    (|w_f + w_b|² > 0.01 (|w_f|² + |w_b|²) + 0.5), and on a motion boundary when the
    backward flow changes fast around it (|∇u|² + |∇v|² > 0.01 |w_b|² + 0.002); both
    are left out, as in the paper's evaluation (after Lai et al., 2018).
    """
    fw_at = warp(forward, backward)  # the forward flow where each pixel lands
    total = fw_at + backward
    occluded = (total ** 2).sum(1) > 0.01 * ((fw_at ** 2).sum(1) + (backward ** 2).sum(1)) + 0.5
    du_dx, du_dy = _gradients(backward[:, 0])
    dv_dx, dv_dy = _gradients(backward[:, 1])
    boundary = (du_dx ** 2 + du_dy ** 2 + dv_dx ** 2 + dv_dy ** 2
                > 0.01 * (backward ** 2).sum(1) + 0.002)
    return (~(occluded | boundary)).unsqueeze(1).to(forward.dtype)


def _gradients(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of ``[B, H, W]``, zero on the last row / column."""
    dx = torch.zeros_like(u)
    dy = torch.zeros_like(u)
    dx[:, :, :-1] = u[:, :, 1:] - u[:, :, :-1]
    dy[:, :-1, :] = u[:, 1:, :] - u[:, :-1, :]
    return dx, dy


def photometric_mask(gray_t: torch.Tensor, warped_gray: torch.Tensor,
                     sharpness: float = 50.0) -> torch.Tensor:
    """VCGAN's soft occlusion mask ``exp(−50 · (x_t − W(x_j))²)`` on the grayscale
    inputs: near 1 where the warped frame matches the current one, near 0 where the
    flow brought the wrong content (occlusions, flow failures)."""
    diff = (gray_t - warped_gray).sum(dim=1, keepdim=True)
    return torch.exp(-sharpness * diff ** 2)
