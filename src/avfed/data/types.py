"""Plain containers shared by every data source.

Sources hand back whole in-memory arrays rather than lazy datasets: the built-in
corpora are tiny, and federated clients slice them by index many times per run, so
one tensor plus an index array is both the fastest and the simplest representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class SkippedFile:
    """A file a loader refused, kept so the run summary can count and name it."""

    path: Path
    reason: str


@dataclass
class ImageSet:
    """Fixed-size inputs as one float tensor ``[N, C, H, W]`` with integer labels.

    Images (in ``[0, 1]``) and featurised audio (standardised log-mels ``[N, 1, mels,
    frames]``) share this container: after featurisation both are 2-D "images" to the
    backbones, the partitioners and the evaluation. ``groups`` carries a grouping
    such as the speaker of each utterance (``None`` when there is none).
    """

    images: torch.Tensor
    labels: np.ndarray
    classes: list[str]
    skipped: list[SkippedFile] = field(default_factory=list)
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(
                f"ImageSet.images must be [N, C, H, W], got shape {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"ImageSet has {len(self.images)} images but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        groups = None if self.groups is None else self.groups[idx]
        return ImageSet(self.images[torch.from_numpy(idx)], self.labels[idx], self.classes,
                        groups=groups)


@dataclass
class AudioSet:
    """Mono waveforms (variable length, float32 in [-1, 1]) with labels and speaker ids.

    ``speakers`` lets partitioners and evaluation split by speaker (speaker-disjoint
    test sets, speaker-skewed clients); it is ``-1`` where the speaker is unknown.
    """

    waveforms: list[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    sample_rate: int
    speakers: np.ndarray | None = None
    skipped: list[SkippedFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.waveforms) != len(self.labels):
            raise ValueError(
                f"AudioSet has {len(self.waveforms)} waveforms but {len(self.labels)} labels"
            )
        if self.speakers is None:
            self.speakers = np.full(len(self.labels), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> AudioSet:
        idx = np.asarray(indices, dtype=np.int64)
        assert self.speakers is not None
        return AudioSet(
            [self.waveforms[i] for i in idx],
            self.labels[idx],
            self.classes,
            self.sample_rate,
            self.speakers[idx],
        )


@dataclass
class VideoSet(ImageSet):
    """Clips ``[N, C, T, H, W]`` as uint8 (0–255) with integer labels.

    Videos are kept as bytes, a quarter of the memory of floats, and scaled to ``[0, 1]``
    batch by batch when a clip is cut and augmented (:mod:`avfed.video.augment`). ``T``
    is the whole stored video; training and evaluation cut clips out of it. ``fps`` is
    the frame rate the frames were sampled at.
    """

    fps: float | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 5:
            raise ValueError(
                f"VideoSet.images must be [N, C, T, H, W], got shape {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"VideoSet has {len(self.images)} videos but {len(self.labels)} "
                             "labels")

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[2])

    def subset(self, indices: np.ndarray) -> VideoSet:
        idx = np.asarray(indices, dtype=np.int64)
        groups = None if self.groups is None else self.groups[idx]
        return VideoSet(self.images[torch.from_numpy(idx)], self.labels[idx], self.classes,
                        groups=groups, fps=self.fps)
