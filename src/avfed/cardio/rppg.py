"""Classical rPPG: a pulse signal from a face's mean skin colour, and a heart rate from it.

Every method starts from the per-frame mean RGB of the skin region on a *uniform* time
grid (``timeline`` puts irregular frames there first) and returns one pulse trace:

* **GREEN** (Verkruysse et al., 2008): the green channel, where haemoglobin absorbs most.
* **CHROM** (de Haan & Jeanne, 2013): two chrominance signals that cancel the specular
  (white) reflection, X = 3R − 2G and Y = 1.5R + G − 1.5B on mean-normalised colour,
  band-passed, combined as S = X − (σX/σY)·Y per 1.6 s window, Hann overlap-added.
* **POS** (Wang et al., 2017): the projection of normalised colour onto the plane
  orthogonal to skin tone, S1 = G − B and S2 = −2R + G + B, h = S1 + (σS1/σS2)·S2 per
  1.6 s window (sliding by one sample), overlap-added.

Then the trace is detrended (smoothness priors, λ = 100) and band-passed to
0.7–3 Hz (42–180 BPM). The heart rate is read two ways: the spectral peak (with
parabolic interpolation between bins) and 60 / mean interval between systolic peaks.
Confidence comes from the spectral SNR: power within ±6 BPM of the peak and of its
second harmonic against the rest of the band, mapped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BAND_HZ = (0.7, 3.0)
METHODS = ("green", "chrom", "pos")
WINDOW_S = 1.6  # CHROM / POS short windows


@dataclass(frozen=True)
class HeartRate:
    """A heart-rate estimate over one window of pulse signal."""

    bpm: float  # from the spectral peak
    bpm_peaks: float  # from inter-peak intervals (nan when too few peaks)
    snr_db: float
    confidence: float  # in [0, 1], from snr_db


def detrend(signal: np.ndarray, lam: float = 100.0) -> np.ndarray:
    """Smoothness-priors detrending (Tarvainen et al., 2002): subtract the trend
    z = (I + λ²·D₂ᵀD₂)⁻¹ x, where D₂ is the second-difference operator."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    x = np.asarray(signal, np.float64)
    n = len(x)
    if n < 3:
        return x - x.mean()
    d2 = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
    system = sparse.eye(n) + lam**2 * (d2.T @ d2)
    return x - spsolve(system.tocsc(), x)


def bandpass(signal: np.ndarray, fs: float, band: tuple[float, float] = BAND_HZ,
             order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth band-pass (the upper edge is kept below Nyquist)."""
    from scipy.signal import butter, sosfiltfilt

    low, high = band
    high = min(high, 0.45 * fs)
    sos = butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    x = np.asarray(signal, np.float64)
    padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x, padlen=max(0, padlen))


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    if rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f"rPPG expects mean RGB per frame as [T, 3], got {rgb.shape}")
    if not np.isfinite(rgb).all():
        raise ValueError("rPPG input holds NaN or Inf (a frame without a face region?)")
    return rgb


def green(rgb: np.ndarray, fs: float) -> np.ndarray:
    """GREEN: the green trace, normalised by its mean."""
    rgb = _check_rgb(rgb)
    g = rgb[:, 1]
    return g / max(g.mean(), 1e-9) - 1.0


def chrom(rgb: np.ndarray, fs: float, window_s: float = WINDOW_S) -> np.ndarray:
    """CHROM with 50 % overlapping windows and Hann overlap-add.

    Colour is normalised by its moving mean over ``window_s`` and the chrominance signals
    are band-passed over the whole trace, then combined per window with that window's
    α. (Band-passing each 1.6 s window on its own, as some implementations do, cannot
    pass a pulse below about 60 BPM — barely more than one beat fits — and locks onto
    its harmonic.)"""
    from scipy.ndimage import uniform_filter1d

    rgb = _check_rgb(rgb)
    n = len(rgb)
    win = max(4, int(round(window_s * fs)))
    win = min(win + win % 2, n - n % 2)
    cn = rgb / np.maximum(uniform_filter1d(rgb, win, axis=0, mode="nearest"), 1e-9)
    x = bandpass(3 * cn[:, 0] - 2 * cn[:, 1], fs)
    y = bandpass(1.5 * cn[:, 0] + cn[:, 1] - 1.5 * cn[:, 2], fs)
    half = win // 2
    out = np.zeros(n)
    hann = np.hanning(win)
    for start in range(0, n - win + 1, half):
        xs, ys = x[start:start + win], y[start:start + win]
        alpha = xs.std() / max(ys.std(), 1e-12)
        out[start:start + win] += hann * (xs - alpha * ys)
    return out


def pos(rgb: np.ndarray, fs: float, window_s: float = WINDOW_S) -> np.ndarray:
    """POS, a window ending at every sample, overlap-added (Wang et al.'s Algorithm 1),
    vectorised over windows."""
    rgb = _check_rgb(rgb)
    n = len(rgb)
    win = min(n, max(2, int(round(window_s * fs))))
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(rgb, win, axis=0)  # [n - win + 1, 3, win]
    cn = windows / np.maximum(windows.mean(2, keepdims=True), 1e-9)
    s1 = cn[:, 1] - cn[:, 2]
    s2 = -2 * cn[:, 0] + cn[:, 1] + cn[:, 2]
    alpha = s1.std(1, keepdims=True) / np.maximum(s2.std(1, keepdims=True), 1e-12)
    h = s1 + alpha * s2
    h -= h.mean(1, keepdims=True)
    out = np.zeros(n)
    for k in range(win):  # overlap-add: window i covers samples i .. i + win - 1
        out[k:k + len(h)] += h[:, k]
    return out


PULSE_METHODS = {"green": green, "chrom": chrom, "pos": pos}


def pulse_signal(rgb: np.ndarray, fs: float, method: str = "pos") -> np.ndarray:
    """The method's trace, detrended and band-passed: the cleaned pulse."""
    if method not in PULSE_METHODS:
        raise ValueError(f"unknown rPPG method '{method}'; choose one of {', '.join(METHODS)}")
    raw = PULSE_METHODS[method](rgb, fs)
    return bandpass(detrend(raw), fs)


def spectral_peak(pulse: np.ndarray, fs: float, band: tuple[float, float] = BAND_HZ,
                  min_resolution_hz: float = 1 / 120) -> tuple[float, float]:
    """(peak frequency in Hz, SNR in dB) of a Hann-windowed, zero-padded periodogram."""
    x = np.asarray(pulse, np.float64)
    x = (x - x.mean()) * np.hanning(len(x))
    nfft = int(2 ** np.ceil(np.log2(max(len(x), fs / min_resolution_hz))))
    power = np.abs(np.fft.rfft(x, nfft)) ** 2
    freqs = np.fft.rfftfreq(nfft, 1 / fs)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    if not in_band.any() or power[in_band].sum() <= 0:
        return float("nan"), float("-inf")
    idx = np.flatnonzero(in_band)
    k = idx[np.argmax(power[idx])]
    f0 = freqs[k]
    if 0 < k < len(power) - 1:  # parabolic interpolation on the log spectrum
        a, b, c = np.log(power[k - 1:k + 2] + 1e-30)
        denom = a - 2 * b + c
        if denom < 0:
            f0 = freqs[k] + 0.5 * (a - c) / denom * (freqs[1] - freqs[0])
    tol = 0.1  # Hz, ±6 BPM
    signal_bins = in_band & ((np.abs(freqs - f0) <= tol) | (np.abs(freqs - 2 * f0) <= tol))
    noise = power[in_band & ~signal_bins].sum()
    snr = 10 * np.log10(power[signal_bins].sum() / max(noise, 1e-30))
    return float(f0), float(snr)


def peak_interval_bpm(pulse: np.ndarray, fs: float, max_bpm: float = 180.0,
                      expected_bpm: float | None = None) -> float:
    """60 / mean interval between systolic peaks (nan with fewer than 3 peaks).

    With ``expected_bpm`` (the spectral estimate) peaks closer than 60 % of its beat
    interval are not counted twice: at slow rates the diastolic wave is a peak of its own.
    """
    from scipy.signal import find_peaks

    x = np.asarray(pulse, np.float64)
    fastest = max_bpm if expected_bpm is None or not np.isfinite(expected_bpm) else min(
        max_bpm, expected_bpm / 0.6)
    peaks, _ = find_peaks(x, distance=max(1, int(fs * 60 / fastest)),
                          prominence=0.3 * x.std() if x.std() > 0 else None)
    if len(peaks) < 3:
        return float("nan")
    return float(60.0 * fs / np.diff(peaks).mean())


def confidence_from_snr(snr_db: float) -> float:
    """A logistic map of SNR to [0, 1]: 0.5 at 0 dB (as much power at the heart rate and
    its harmonic as in the rest of the band), about 0.9 at +4.4 dB."""
    if not np.isfinite(snr_db):
        return 0.0
    return float(1 / (1 + np.exp(-snr_db / 2)))


def estimate_heart_rate(rgb: np.ndarray, fs: float, method: str = "pos") -> HeartRate:
    """Heart rate of a window of mean skin RGB ``[T, 3]`` sampled uniformly at ``fs``."""
    if len(rgb) < int(2 * fs):
        raise ValueError(f"need at least 2 s of signal, got {len(rgb) / fs:.2f} s")
    pulse = pulse_signal(rgb, fs, method)
    f0, snr = spectral_peak(pulse, fs)
    return HeartRate(60 * f0, peak_interval_bpm(pulse, fs, expected_bpm=60 * f0), snr,
                     confidence_from_snr(snr))
