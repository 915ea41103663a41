"""Which frames make a clip: T frames at stride s, from a random or a fixed start.

Training takes one random clip per video per step (temporal jitter is free
augmentation); evaluation takes several clips spread uniformly over the video and
averages their features, so a score does not depend on which second happened to be
sampled. Both are index arithmetic kept apart from decoding, so the same rule serves
in-memory clips and files on disk.
"""

from __future__ import annotations

import numpy as np


def clip_span(clip_len: int, stride: int) -> int:
    """Frames a clip covers from its first to its last frame, inclusive."""
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be ≥ 1, got {clip_len} and {stride}")
    return (clip_len - 1) * stride + 1


def clip_indices(num_frames: int, clip_len: int, stride: int, start: int,
                 pad: str = "error") -> np.ndarray:
    """Indices ``start, start + stride, …`` of a ``clip_len``-frame clip.

    A video shorter than the clip raises unless ``pad="loop"`` (wrap around, as short
    action clips are usually treated) or ``pad="repeat"`` (hold the last frame).
    """
    span = clip_span(clip_len, stride)
    if num_frames < 1:
        raise ValueError("a video with no frames has no clips")
    if not 0 <= start < num_frames:
        raise ValueError(f"start {start} is outside a {num_frames}-frame video")
    indices = start + stride * np.arange(clip_len)
    if start + span <= num_frames:
        return indices
    if pad == "loop":
        return indices % num_frames
    if pad == "repeat":
        return np.minimum(indices, num_frames - 1)
    raise ValueError(f"a {clip_len}-frame clip at stride {stride} needs {span} frames from "
                     f"frame {start}; the video has {num_frames} (pad='loop' or 'repeat' "
                     "allows shorter videos)")


def random_clip_start(num_frames: int, clip_len: int, stride: int,
                      rng: np.random.Generator) -> int:
    """A uniformly random start at which the whole clip fits (0 if the video is too short)."""
    last = num_frames - clip_span(clip_len, stride)
    return int(rng.integers(0, last + 1)) if last > 0 else 0


def uniform_clip_starts(num_frames: int, clip_len: int, stride: int,
                        num_clips: int) -> list[int]:
    """``num_clips`` starts spread evenly from the first to the last position that fits.

    One clip is centred; a video too short for the clip gets start 0 for each.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be ≥ 1, got {num_clips}")
    last = max(num_frames - clip_span(clip_len, stride), 0)
    if num_clips == 1:
        return [last // 2]
    return [int(round(x)) for x in np.linspace(0, last, num_clips)]
