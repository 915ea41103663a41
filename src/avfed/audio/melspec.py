"""Waveform → log-mel spectrogram on torch alone (no torchaudio).

The mel filterbank follows the Slaney convention that librosa uses by default
(``htk=False``, ``norm="slaney"``): linear below 1 kHz, logarithmic above, each
triangle normalised to unit area. Matching librosa means features and published
recipes computed with it (BYOL-A, AudioInceptionNeXt's front-ends) carry over.

Layout: ``[B, 1, n_mels, frames]`` — frequency on the height axis, time on the width
axis — which is what the audio backbones and log-mel augmentations expect.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_F_SP = 200.0 / 3  # Hz per mel in the linear region
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear up to 1 kHz, logarithmic above."""
    linear = hz / _F_SP
    log_part = _MIN_LOG_MEL + torch.log(torch.clamp(hz, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * _F_SP
    log_part = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, linear)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """``[n_mels, n_fft // 2 + 1]`` triangular filters, area-normalised (float64)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_mels < 1:
        raise ValueError(f"n_mels must be >= 1, got {n_mels}")
    if n_fft < 2:
        raise ValueError(f"n_fft must be >= 2, got {n_fft}")
    if not 0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    if f_max > sample_rate / 2:
        raise ValueError(f"f_max={f_max} Hz exceeds the Nyquist frequency "
                         f"{sample_rate / 2} Hz of sample_rate={sample_rate}")
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(float(hz_to_mel(torch.tensor(f_min, dtype=torch.float64))),
                               float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64))),
                               n_mels + 2, dtype=torch.float64)
    hz_edges = mel_to_hz(mel_edges)
    widths = hz_edges.diff()
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return weights * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]


class LogMel(nn.Module):
    """``log(mel power + offset)`` of a batch of mono waveforms.

    Frames are centred (the signal is zero-padded by ``n_fft // 2`` at both ends, as
    librosa does by default), windowed with a periodic Hann window.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400,
                 hop_length: int = 160, win_length: int | None = None, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None,
                 log_offset: float = 1e-6) -> None:
        super().__init__()
        win_length = win_length or n_fft
        if hop_length < 1:
            raise ValueError(f"hop_length must be >= 1, got {hop_length}")
        if not 1 <= win_length <= n_fft:
            raise ValueError(f"win_length must be in [1, n_fft={n_fft}], got {win_length}")
        if log_offset <= 0:
            raise ValueError(f"log_offset must be > 0, got {log_offset}")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.log_offset = log_offset
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max).float()
        self.register_buffer("filterbank", fb, persistent=False)
        self.register_buffer("window", torch.hann_window(win_length, periodic=True),
                             persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.ndim == 1:
            waveforms = waveforms[None]
        if waveforms.ndim != 2:
            raise ValueError(f"LogMel expects [samples] or [B, samples], got shape "
                             f"{tuple(waveforms.shape)}")
        spec = torch.stft(waveforms.float(), self.n_fft, self.hop_length, self.win_length,
                          self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real**2 + spec.imag**2
        mel = torch.matmul(self.filterbank, power)
        return torch.log(mel + self.log_offset)[:, None]
