"""Turn an :class:`AudioSet` of variable-length waveforms into fixed-size log-mels.

Federated clients slice one in-memory tensor by index many times per run, so audio is
featurised once, up front: resample, centre-crop or zero-pad to a fixed duration (a
clip shorter than the window is padded with silence, the usual fixed-length rule),
log-mel, then standardise with the *training* split's mean and standard deviation (as
BYOL-A does), so the test split never leaks into the statistics.
"""

from __future__ import annotations

import numpy as np
import torch

from avfed.audio.melspec import LogMel
from avfed.config import AudioFeatureConfig
from avfed.data.sources.audio_io import fit_length, resample
from avfed.data.types import AudioSet, ImageSet


def log_mel_frontend(cfg: AudioFeatureConfig) -> LogMel:
    return LogMel(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
    )


@torch.no_grad()
def waveforms_to_log_mels(data: AudioSet, cfg: AudioFeatureConfig,
                          batch_size: int = 256) -> torch.Tensor:
    """``[N, 1, n_mels, frames]`` log-mels (not yet standardised)."""
    length = int(round(cfg.duration_s * cfg.sample_rate))
    frontend = log_mel_frontend(cfg)
    waves = np.stack([
        fit_length(resample(w, data.sample_rate, cfg.sample_rate), length)
        for w in data.waveforms
    ]).astype(np.float32) if len(data) else np.zeros((0, length), np.float32)
    chunks = [frontend(torch.from_numpy(waves[i : i + batch_size]))
              for i in range(0, len(waves), batch_size)]
    if not chunks:
        raise ValueError("cannot featurise an empty audio set")
    return torch.cat(chunks)


def log_mel_split(train: AudioSet, test: AudioSet,
                  cfg: AudioFeatureConfig) -> tuple[ImageSet, ImageSet]:
    """Featurise both splits, standardised with the training split's statistics."""
    train_x = waveforms_to_log_mels(train, cfg)
    test_x = waveforms_to_log_mels(test, cfg)
    mean, std = train_x.mean(), train_x.std().clamp_min(1e-6)
    train_set = ImageSet((train_x - mean) / std, train.labels, train.classes,
                         groups=train.speakers)
    test_set = ImageSet((test_x - mean) / std, test.labels, test.classes, groups=test.speakers)
    train_set.skipped = list(train.skipped)
    return train_set, test_set
