"""CardioNet: heart rate from face crops and speech, two branches fused by attention.

The paper gives the parts, not the layer sizes; this is a small CPU-sized version built
from them, with every choice meant to make the heart rate easy to find:

* **Video branch.** Face crops ``[B, T, 3, S, S]`` are normalised by their window mean
  (rPPG works on relative colour change). A *temporal-differencing* module forms the
  normalised frame difference (xₜ₊₁ − xₜ)/(xₜ₊₁ + xₜ), which removes the static face
  and keeps the pulse and motion, and a small convolutional encoder pools each frame
  to a few learned colour/space projections (a learned POS, in effect). A
  *frequency-aware* module then takes the spectrum of each projection over the window,
  keeps the heart-rate band (0.7–3 Hz) and weights it per channel and per frequency
  with learned gains: one token per frequency bin.
* **Audio branch.** The raw waveform passes through *learnable temporal-frequency
  filters*: a bank of band-pass filters (sinc filters with learnable edges), whose
  rectified output is smoothed to an envelope at the video's rate; the envelope's
  spectrum in the same band gives the audio tokens, one per frequency bin.
* **Fusion.** Multi-head attention: the video's frequency tokens attend to the audio's
  (cross-attention with a residual), then a shared read-out gives one logit per
  frequency bin; the heart rate is the softmax-weighted mean of the bins' BPM. With
  ``branches="video"`` or ``"audio"`` (the ablations) one branch's tokens attend to
  themselves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BRANCHES = ("av", "video", "audio")


def band_bins(num_samples: int, rate: float, nfft: int, band: tuple[float, float]
              ) -> torch.Tensor:
    """Indices of the rFFT bins of length ``nfft`` at ``rate`` that fall inside ``band``."""
    freqs = torch.fft.rfftfreq(nfft, 1.0 / rate)
    return torch.nonzero((freqs >= band[0]) & (freqs <= band[1])).flatten()


class TemporalDifference(nn.Module):
    """Normalised frame differences (xₜ₊₁ − xₜ)/(xₜ₊₁ + xₜ), padded back to T frames."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C, H, W], positive
        diff = (x[:, 1:] - x[:, :-1]) / (x[:, 1:] + x[:, :-1] + 1e-6)
        return torch.cat([diff[:, :1] * 0, diff], dim=1)


class FrequencyAware(nn.Module):
    """Band-limited magnitude spectrum of each channel, weighted per channel and bin."""

    def __init__(self, channels: int, bins: torch.Tensor, nfft: int) -> None:
        super().__init__()
        self.nfft = nfft
        self.register_buffer("bins", bins, persistent=False)
        self.gain = nn.Parameter(torch.ones(channels, len(bins)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, F, C]
        x = x - x.mean(-1, keepdim=True)
        x = x * torch.hann_window(x.shape[-1], device=x.device, dtype=x.dtype)
        spectrum = torch.fft.rfft(x, n=self.nfft).abs()[..., self.bins]
        spectrum = spectrum / (spectrum.sum(-1, keepdim=True) + 1e-8)  # shape, not scale
        return (spectrum * self.gain).transpose(1, 2)


class SincFilterBank(nn.Module):
    """Band-pass filters with learnable low and high cut-offs (SincNet, Ravanelli &
    Bengio 2018): few parameters, and each filter stays a band-pass while it learns."""

    def __init__(self, filters: int, kernel: int, rate: int, low_hz: float = 50.0,
                 high_hz: float | None = None) -> None:
        super().__init__()
        high_hz = high_hz or rate / 2 - 20
        edges = torch.linspace(math.log(low_hz), math.log(high_hz), filters + 1).exp()
        self.low = nn.Parameter(edges[:-1] / rate)
        self.band = nn.Parameter((edges[1:] - edges[:-1]) / rate)
        n = torch.arange(kernel, dtype=torch.float32) - (kernel - 1) / 2
        self.register_buffer("n", n, persistent=False)
        self.register_buffer("window", torch.hamming_window(kernel, periodic=False),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, filters, N]
        low = self.low.abs() + 1e-3
        high = torch.clamp(low + self.band.abs() + 1e-3, max=0.5)
        n = self.n[None, :]

        def lowpass(fc: torch.Tensor) -> torch.Tensor:
            return 2 * fc[:, None] * torch.sinc(2 * fc[:, None] * n)

        kernels = (lowpass(high) - lowpass(low)) * self.window[None, :]
        return F.conv1d(wave[:, None, :], kernels[:, None, :], padding=kernels.shape[-1] // 2)


class CardioNet(nn.Module):
    """See the module docstring. Inputs: ``video`` ``[B, T, 3, S, S]`` (raw colour, any
    positive scale) sampled at ``video_rate``; ``audio`` ``[B, N]`` at ``audio_rate``.
    ``forward`` returns logits over the heart-rate bins (``self.bpm_bins``)."""

    def __init__(self, branches: str = "av", video_rate: float = 16.0, audio_rate: int = 1000,
                 window_s: float = 6.0, width: int = 32, projections: int = 8,
                 audio_filters: int = 8, heads: int = 4, nfft: int = 512,
                 band: tuple[float, float] = (0.7, 3.0)) -> None:
        super().__init__()
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}, got '{branches}'")
        self.branches, self.video_rate, self.audio_rate = branches, video_rate, audio_rate
        self.window_s = window_s
        self.frames = int(round(window_s * video_rate))
        self.samples = int(round(window_s * audio_rate))
        bins = band_bins(self.frames, video_rate, nfft, band)
        self.register_buffer("bpm_bins", 60.0 * torch.fft.rfftfreq(nfft, 1 / video_rate)[bins],
                             persistent=False)
        if branches in ("av", "video"):
            self.difference = TemporalDifference()
            self.encoder = nn.Sequential(  # stride 2 first: the pulse is in the mean colour
                nn.Conv2d(6, 12, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(12, projections, 1),
                nn.AdaptiveAvgPool2d(1))
            self.video_freq = FrequencyAware(projections, bins, nfft)
            self.video_embed = nn.Linear(projections, width)
        if branches in ("av", "audio"):
            self.filters = SincFilterBank(audio_filters, 33, audio_rate)
            self.audio_freq = FrequencyAware(audio_filters, bins, nfft)
            self.audio_embed = nn.Linear(audio_filters, width)
        self.position = nn.Parameter(torch.zeros(1, len(bins), width))
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        x = video / (video.mean(dim=(1, 3, 4), keepdim=True) + 1e-6)  # relative colour
        features = torch.cat([x - 1.0, self.difference(x)], dim=2)  # appearance + motion
        projected = self.encoder(features.flatten(0, 1)).view(b, t, -1).transpose(1, 2)
        return self.video_embed(self.video_freq(projected))

    def audio_tokens(self, audio: torch.Tensor) -> torch.Tensor:
        audio = audio / (audio.std(-1, keepdim=True) + 1e-6)
        bands = self.filters(audio).abs()
        hop = max(1, int(round(self.audio_rate / self.video_rate)))
        envelope = F.avg_pool1d(bands, hop * 2, stride=hop)[..., : self.frames]
        envelope = torch.log1p(envelope)
        return self.audio_embed(self.audio_freq(envelope))

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        if self.branches == "audio":
            tokens = self.audio_tokens(audio) + self.position
            context = tokens
        else:
            tokens = self.video_tokens(video) + self.position
            context = (self.audio_tokens(audio) + self.position if self.branches == "av"
                       else tokens)
        fused, _ = self.attention(tokens, context, context, need_weights=False)
        fused = self.norm(tokens + fused)
        return self.readout(fused).squeeze(-1)  # [B, bins]

    def bpm(self, logits: torch.Tensor) -> torch.Tensor:
        """Expected heart rate under the softmax over bins."""
        return (logits.softmax(-1) * self.bpm_bins).sum(-1)


def soft_targets(bpm: torch.Tensor, bins: torch.Tensor, sigma: float = 2.5) -> torch.Tensor:
    """A Gaussian over the bins around each true BPM (label smoothing in BPM units)."""
    weights = torch.exp(-0.5 * ((bins[None, :] - bpm[:, None]) / sigma) ** 2)
    return weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)


def cardionet_loss(model: CardioNet, logits: torch.Tensor, bpm: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the soft targets plus a small L1 on the expected BPM (/10)."""
    targets = soft_targets(bpm, model.bpm_bins)
    ce = -(targets * logits.log_softmax(-1)).sum(-1).mean()
    return ce + 0.1 * F.l1_loss(model.bpm(logits), bpm) / 10.0
