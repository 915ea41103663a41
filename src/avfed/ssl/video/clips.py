"""Cutting clips out of a batch of stored videos, one start per video, in one gather.

Pretext tasks draw many clips per step (VCOP three per video, contrastive two), so the
cut is a single ``torch.gather``-style index over the time axis rather than a Python
loop over videos.
"""

from __future__ import annotations

import torch

from avfed.video.sampling import clip_span, uniform_clip_starts

__all__ = ["clip_span", "gather_clips", "random_starts", "uniform_starts"]


def random_starts(num_frames: int, span: int, batch: int,
                  generator: torch.Generator | None) -> torch.Tensor:
    """``[batch]`` start frames, uniform over those that keep ``span`` inside the video."""
    if span > num_frames:
        raise ValueError(f"a clip spanning {span} frames does not fit in videos of "
                         f"{num_frames} frames")
    return torch.randint(0, num_frames - span + 1, (batch,), generator=generator)


def uniform_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """``num_clips`` evenly spaced starts covering the video (evaluation); fewer distinct
    ones when the video is short."""
    if span > num_frames:
        raise ValueError(f"a clip spanning {span} frames does not fit in videos of "
                         f"{num_frames} frames")
    return sorted(set(uniform_clip_starts(num_frames, span, 1, num_clips)))


def gather_clips(videos: torch.Tensor, starts: torch.Tensor, clip_len: int,
                 stride: int | torch.Tensor = 1) -> torch.Tensor:
    """``[B, C, clip_len, H, W]``: from video ``b`` the frames ``starts[b] + i·stride[b]``.

    ``stride`` is one int or ``[B]`` (each video its own playback rate).
    """
    b = videos.shape[0]
    steps = torch.arange(clip_len)
    rate = stride if isinstance(stride, torch.Tensor) else torch.full((b,), int(stride))
    frames = starts.view(b, 1) + steps.view(1, clip_len) * rate.view(b, 1)
    if int(frames.max()) >= videos.shape[2] or int(frames.min()) < 0:
        raise ValueError(f"clip frames {int(frames.min())}..{int(frames.max())} fall outside "
                         f"videos of {videos.shape[2]} frames")
    batch_idx = torch.arange(b).view(b, 1)
    # advanced indexing on dims 0 and 2 moves the indexed dims first: [B, L, C, H, W]
    return videos[batch_idx, :, frames.to(videos.device)].permute(0, 2, 1, 3, 4)
