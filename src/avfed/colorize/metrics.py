"""How colorized videos are scored: fidelity per frame (PSNR, SSIM), vividness
(colorfulness) and temporal consistency (warp error, CDC).

Frames are ``[T, 3, H, W]`` tensors (or arrays) in [0, 1]. The temporal metrics need no
ground truth: a flickering video scores badly even when each frame is plausible, which
is exactly what per-frame colorizers do.
"""

from __future__ import annotations

import numpy as np
import torch

from avfed.colorize.color import luminance
from avfed.colorize.flow import clip_flows, consistency_mask, warp

CDC_STEPS = (1, 2, 4)


def _hwc(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    array = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else frame
    return np.asarray(array, dtype=np.float64).transpose(1, 2, 0)


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR (dB, data range 1) over frames ``[T, 3, H, W]``."""
    from skimage.metrics import peak_signal_noise_ratio

    values = [peak_signal_noise_ratio(_hwc(t), np.clip(_hwc(o), 0, 1), data_range=1.0)
              for o, t in zip(output, target, strict=True)]
    return float(np.mean(np.minimum(values, 100.0)))  # identical frames: cap, not inf


def ssim(output: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM over frames (scikit-image, colour channels averaged, data range 1)."""
    from skimage.metrics import structural_similarity

    side = min(output.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    return float(np.mean([structural_similarity(_hwc(t), np.clip(_hwc(o), 0, 1),
                                                channel_axis=2, data_range=1.0, win_size=win)
                          for o, t in zip(output, target, strict=True)]))


def colorfulness(frames: torch.Tensor) -> float:
    """Hasler and Süsstrunk's colorfulness (0 for gray; above ~45 is "highly colourful"),
    on the 0–255 scale, averaged over frames."""
    scores = []
    for frame in frames:
        rgb = _hwc(frame) * 255.0
        rg = rgb[..., 0] - rgb[..., 1]
        yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
        sigma = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
        mu = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
        scores.append(sigma + 0.3 * mu)
    return float(np.mean(scores))


def warp_error_from_flows(frames: torch.Tensor, forward: torch.Tensor, backward: torch.Tensor
                          ) -> float:
    """Mean squared difference between each frame t ≥ 1 and frame t − 1 warped onto it,
    over the pixels :func:`~avfed.colorize.flow.consistency_mask` keeps.

    ``backward[t-1]`` is the flow from t to t − 1 and ``forward[t-1]`` from t − 1 to t
    (both ``[T-1, 2, H, W]``). Frames ``[T, C, H, W]``; the mean runs over channels and
    kept pixels of all pairs (NaN if no pixel is kept).
    """
    frames = torch.as_tensor(frames, dtype=torch.float32)
    if len(frames) < 2:
        raise ValueError("warp error needs at least two frames")
    mask = consistency_mask(forward.float(), backward.float())  # [T-1, 1, H, W]
    warped = warp(frames[:-1], backward.float())
    err = ((frames[1:] - warped) ** 2).mean(dim=1, keepdim=True)
    kept = mask.sum()
    return float((err * mask).sum() / kept) if kept > 0 else float("nan")


def warp_error(frames: torch.Tensor, gray: torch.Tensor | None = None, method: str = "dis"
               ) -> float:
    """:func:`warp_error_from_flows` with flows computed on ``gray`` (``[T, 1, H, W]``;
    by default the frames' own luminance): on the grayscale inputs, so that every
    colorization of one clip is measured with the same flows."""
    if gray is None:
        gray = luminance(torch.as_tensor(frames, dtype=torch.float32))
    n = len(gray)
    backward = clip_flows(gray, [(t, t - 1) for t in range(1, n)], method)
    forward = clip_flows(gray, [(t - 1, t) for t in range(1, n)], method)
    return warp_error_from_flows(frames, forward, backward)


def _js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p = p / max(p.sum(), 1e-12)
    q = q / max(q.sum(), 1e-12)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def cdc(frames: torch.Tensor, steps: tuple[int, ...] = CDC_STEPS) -> float:
    """Color distribution consistency (TCVC): the Jensen–Shannon divergence of 256-bin
    per-channel histograms between frames t and t + d, averaged over channels, frames
    and d in ``steps``; 0 when every frame has the same colour distribution. Steps
    longer than the clip are left out."""
    arrays = [np.clip(np.rint(_hwc(f) * 255.0), 0, 255).astype(np.int64) for f in frames]
    hists = [[np.bincount(a[..., c].ravel(), minlength=256).astype(np.float64)
              for c in range(a.shape[-1])] for a in arrays]
    per_step = []
    for d in steps:
        if d >= len(frames):
            continue
        per_step.append(np.mean([_js_divergence(hists[t][c], hists[t + d][c])
                                 for t in range(len(frames) - d)
                                 for c in range(len(hists[t]))]))
    if not per_step:
        raise ValueError(f"CDC needs more than {min(steps)} frames, got {len(frames)}")
    return float(np.mean(per_step))


def video_scores(output: torch.Tensor, target: torch.Tensor, gray: torch.Tensor,
                 method: str = "dis") -> dict[str, float]:
    """Every score of one clip: ``psnr``, ``ssim``, ``colorfulness``, ``warp_error``, ``cdc``."""
    return {"psnr": psnr(output, target), "ssim": ssim(output, target),
            "colorfulness": colorfulness(output),
            "warp_error": warp_error(output, gray, method), "cdc": cdc(output)}
