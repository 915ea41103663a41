"""One uniform clock for frames that arrive irregularly and audio that is offset and jittered.

A live stream's frames come at whatever rate the camera, the encoder and the network
allow — 15 FPS, then 30, then 24 — and its audio chunks carry their own timestamps,
hundreds of milliseconds off the video's and jittered. Nothing downstream should care:
every estimator here reads fixed-rate windows.

* :class:`SampleTimeline` keeps timestamped per-frame values (mean skin RGB, face
  crops) for the last ``horizon_s`` seconds and resamples any window onto a uniform grid
  by linear interpolation. A window is refused (``None``) when its samples leave a gap
  longer than ``max_gap_s`` or cover too little of it, so a stall never turns into an
  invented signal.
* :class:`AudioTimeline` places audio chunks by their timestamps. A chunk that starts
  within ``jitter_tolerance_s`` of where the previous one ended is taken as contiguous
  (its timestamp jitter is absorbed and the clock nudged toward it); one further away
  is a discontinuity: the gap is marked missing, or the overlap dropped.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class SampleTimeline:
    """Timestamped samples (any fixed shape) with windowed uniform resampling."""

    def __init__(self, horizon_s: float = 30.0, max_gap_s: float = 0.5) -> None:
        self.horizon_s, self.max_gap_s = horizon_s, max_gap_s
        self._times: deque[float] = deque()
        self._values: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self._times)

    @property
    def last_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def add(self, time_s: float, value: np.ndarray) -> None:
        """Append a sample; times must increase (the caller screens bad timestamps)."""
        if self._times and time_s <= self._times[-1]:
            raise ValueError(f"timestamps must increase: {time_s} after {self._times[-1]}")
        self._times.append(float(time_s))
        self._values.append(np.asarray(value))
        while self._times and self._times[0] < time_s - self.horizon_s:
            self._times.popleft()
            self._values.popleft()

    def window(self, start_s: float, end_s: float, rate: float,
               min_coverage: float = 0.8) -> tuple[np.ndarray, np.ndarray] | None:
        """``(grid_times, values)`` on ``start_s + k / rate`` up to ``end_s``, or ``None``
        when the samples do not cover the window well enough."""
        if not self._times:
            return None
        times = np.fromiter(self._times, float, len(self._times))
        inside = (times >= start_s - self.max_gap_s) & (times <= end_s + self.max_gap_s)
        if inside.sum() < 2:
            return None
        t = times[inside]
        covered_from, covered_to = max(t[0], start_s), min(t[-1], end_s)
        if covered_to - covered_from < min_coverage * (end_s - start_s):
            return None
        gaps = np.diff(np.concatenate([[max(start_s, t[0])], t[(t > start_s) & (t < end_s)],
                                       [min(end_s, t[-1])]]))
        if len(gaps) and gaps.max() > self.max_gap_s:
            return None
        values = np.stack([v for v, keep in zip(self._values, inside, strict=True) if keep])
        n = int(np.floor((covered_to - covered_from) * rate + 1e-9)) + 1
        grid = covered_from + np.arange(n) / rate
        flat = values.reshape(len(values), -1).astype(np.float64)
        out = np.empty((n, flat.shape[1]))
        for j in range(flat.shape[1]):
            out[:, j] = np.interp(grid, t, flat[:, j])
        return grid, out.reshape((n, *values.shape[1:]))


class AudioTimeline:
    """Audio chunks placed by timestamp on one clock, at a fixed ``rate``."""

    def __init__(self, rate: int, horizon_s: float = 30.0,
                 jitter_tolerance_s: float = 0.08, clock_gain: float = 0.05) -> None:
        self.rate, self.horizon_s = int(rate), horizon_s
        self.jitter_tolerance_s, self.clock_gain = jitter_tolerance_s, clock_gain
        self._start: float | None = None  # clock time of self._samples[0]
        self._samples = np.zeros(0, np.float32)
        self._valid = np.zeros(0, bool)
        self.discontinuities = 0

    @property
    def end_time(self) -> float | None:
        return None if self._start is None else self._start + len(self._samples) / self.rate

    def add(self, time_s: float, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32).reshape(-1)
        if self._start is None:
            self._start = float(time_s)
            self._samples, self._valid = samples.copy(), np.ones(len(samples), bool)
            return
        expected = self.end_time
        assert expected is not None
        error = float(time_s) - expected
        if abs(error) <= self.jitter_tolerance_s:
            # contiguous: absorb the jitter, nudge the clock toward the timestamps
            self._start += self.clock_gain * error
            self._append(samples, np.ones(len(samples), bool))
        elif error > 0:  # a gap: mark the missing stretch
            missing = int(round(error * self.rate))
            self._append(np.zeros(missing, np.float32), np.zeros(missing, bool))
            self._append(samples, np.ones(len(samples), bool))
            self.discontinuities += 1
        else:  # overlap (or a timestamp that jumped back): keep only the new part
            overlap = int(round(-error * self.rate))
            if overlap < len(samples):
                self._append(samples[overlap:], np.ones(len(samples) - overlap, bool))
            self.discontinuities += 1
        self._trim()

    def _append(self, samples: np.ndarray, valid: np.ndarray) -> None:
        self._samples = np.concatenate([self._samples, samples])
        self._valid = np.concatenate([self._valid, valid])

    def _trim(self) -> None:
        extra = len(self._samples) - int(self.horizon_s * self.rate)
        if extra > 0 and self._start is not None:
            self._samples, self._valid = self._samples[extra:], self._valid[extra:]
            self._start += extra / self.rate

    def window(self, start_s: float, end_s: float, rate: int | None = None,
               min_valid: float = 0.8) -> np.ndarray | None:
        """Samples of ``[start_s, end_s)`` (resampled to ``rate`` when given), or ``None``
        when under ``min_valid`` of the window was heard."""
        if self._start is None:
            return None
        n = int(round((end_s - start_s) * self.rate))
        first = int(round((start_s - self._start) * self.rate))
        idx = np.arange(first, first + n)
        inside = (idx >= 0) & (idx < len(self._samples))
        valid = np.zeros(n, bool)
        valid[inside] = self._valid[idx[inside]]
        if n == 0 or valid.mean() < min_valid:
            return None
        out = np.zeros(n, np.float32)
        out[valid] = self._samples[idx[valid]]
        if rate is not None and rate != self.rate:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(int(rate), self.rate)
            out = resample_poly(out, int(rate) // g, self.rate // g).astype(np.float32)
        return out
