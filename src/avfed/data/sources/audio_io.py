"""Reading and shaping audio clips: shared by every audio loader and the featuriser.

One place decides how a clip becomes a mono float32 waveform at the target rate
(polyphase resampling) and how it is brought to a fixed length (centre crop, or
silence padded evenly at both ends), so every dataset is treated alike.
"""

from __future__ import annotations

import warnings
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from avfed.data.types import SkippedFile


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``wave`` at ``rate`` Hz resampled to ``target`` Hz (polyphase, float32)."""
    if rate == target:
        return wave
    g = gcd(int(rate), int(target))
    return resample_poly(wave, target // g, rate // g).astype(np.float32)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Centre-crop, or zero-pad evenly at both ends, to exactly ``num_samples``."""
    if len(wave) >= num_samples:
        start = (len(wave) - num_samples) // 2
        return wave[start : start + num_samples]
    pad = num_samples - len(wave)
    return np.pad(wave, (pad // 2, pad - pad // 2))


def read_clip(path: Path, sample_rate: int, num_samples: int | None) -> np.ndarray:
    """Mono float32 at ``sample_rate`` (``resample_poly``), fitted to ``num_samples``.

    Raises on anything unusable (undecodable, empty, NaN/Inf) so callers can skip it.
    """
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if audio.shape[0] == 0:
        raise ValueError("file holds no samples")
    if not np.isfinite(audio).all():
        raise ValueError("file holds NaN or Inf samples")
    mono = resample(audio.mean(axis=1), rate, sample_rate)
    if num_samples is not None:
        mono = fit_length(mono, num_samples)
    return np.ascontiguousarray(mono, dtype=np.float32)


def clip_samples(sample_rate: int, clip_seconds: float | None) -> int | None:
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    if clip_seconds is None:
        return None
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0 (or None to keep lengths), got {clip_seconds}")
    return int(round(clip_seconds * sample_rate))


def skip(skipped: list[SkippedFile], path: Path, reason: str) -> None:
    """Record and announce a file the loader refused."""
    skipped.append(SkippedFile(path, reason))
    warnings.warn(f"skipping unreadable audio {path}: {reason}", stacklevel=3)
