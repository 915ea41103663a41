"""The streaming estimator: timestamped frames and audio chunks in, heart-rate updates out.

One :class:`CardioEstimator` serves one stream (a file, a webcam, one WebSocket
session). Frames go through the face tracker to a mean skin colour (and, for CardioNet,
a small face crop), both kept on a :class:`~avfed.cardio.timeline.SampleTimeline`;
audio goes to an :class:`~avfed.cardio.timeline.AudioTimeline`. Every
``update_every_s`` seconds of stream time the last ``window_s`` seconds are resampled to
a uniform rate and read out.

Every update says what it is (``status``) and carries a BPM only when there is one to
give: before a full window (``warming_up``), without a face for part of the window
(``no_face``), across a stall in the stream (``gap``) or when the pulse is not above
the noise (``low_signal``) the BPM is ``None``. Input that cannot be used is refused,
with a status saying why, and never reaches the estimate: a frame that is not
``H×W×3 uint8`` or changes size mid-stream (``bad_frame``), a timestamp that repeats
or goes backwards (``bad_timestamp``), audio that is not finite (``bad_audio``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from avfed.cardio.face import FaceTracker, face_crop
from avfed.cardio.rppg import METHODS, estimate_heart_rate
from avfed.cardio.timeline import AudioTimeline, SampleTimeline

# A model read-out: (face crops [T, S, S, 3] uint8-range floats at crop_rate,
# audio [N] at audio_rate or None) -> BPM
Predictor = Callable[[np.ndarray, np.ndarray | None], float]


@dataclass
class Update:
    """One line of the heart-rate series (also what the service pushes to a browser)."""

    time_s: float  # stream time the estimate is for (end of its window)
    bpm: float | None
    confidence: float
    method: str
    status: str  # ok | warming_up | no_face | gap | low_signal | bad_frame | bad_timestamp | ...
    detail: str = ""
    bpm_peaks: float | None = None  # the peak-interval read-out, for comparison
    audio: str = "none"  # ok | missing | none (no audio seen at all)

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("bpm", "bpm_peaks", "confidence"):
            value = out[key]
            out[key] = None if value is None or not math.isfinite(value) else round(value, 3)
        out["time_s"] = round(self.time_s, 4)
        return out


@dataclass
class ModelSpec:
    """How a learned model wants its inputs (CardioNet: crops and audio on fixed grids)."""

    predictor: Predictor
    name: str
    crop_size: int
    crop_rate: float
    audio_rate: int
    window_s: float
    needs_audio: bool


class CardioEstimator:
    """See the module docstring. ``method`` is one of GREEN/CHROM/POS; with ``model`` a
    learned model is read out instead, falling back to ``method`` (and saying so in the
    update's ``method``) when the model needs audio and the window has none. Either way
    the confidence is the classical pulse's SNR, and below ``min_confidence`` no BPM is
    given: a network always outputs a number, which is not evidence of a pulse."""

    def __init__(self, method: str = "pos", window_s: float = 8.0, update_every_s: float = 1.0,
                 rate: float = 30.0, detect_every: int = 10, min_confidence: float = 0.3,
                 audio_rate: int = 16000, model: ModelSpec | None = None,
                 max_gap_s: float = 0.5, detect_width: int = 160) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
        if window_s < 2 or update_every_s <= 0 or rate <= 6:
            raise ValueError("need window_s >= 2, update_every_s > 0 and rate > 6 Hz "
                             f"(got {window_s}, {update_every_s}, {rate})")
        self.method, self.window_s, self.update_every_s = method, window_s, update_every_s
        self.rate, self.min_confidence, self.model = rate, min_confidence, model
        horizon = max(window_s, model.window_s if model else 0) + 5.0
        self.tracker = FaceTracker(detect_every=detect_every, detect_width=detect_width)
        self.colour = SampleTimeline(horizon, max_gap_s)
        self.arrivals = SampleTimeline(horizon, max_gap_s)  # every usable frame's time
        self.crops = SampleTimeline(horizon, max_gap_s) if model else None
        self.audio = AudioTimeline(audio_rate, horizon)
        self.audio_rate = audio_rate
        self.frame_shape: tuple[int, ...] | None = None
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.next_update: float | None = None
        self.frames_in = self.frames_refused = self.audio_refused = 0
        self.stage_seconds = {"face": 0.0, "estimate": 0.0}

    # -- input ------------------------------------------------------------------------

    def push_frame(self, rgb: np.ndarray, time_s: float) -> list[Update]:
        """Add a frame captured at ``time_s``; returns the updates it completes, or one
        refusal update when the frame cannot be used."""
        problem = self._check_frame(rgb, time_s)
        if problem is not None:
            self.frames_refused += 1
            status, detail = problem
            return [Update(float(time_s) if _finite(time_s) else float("nan"), None, 0.0,
                           self._method_name(), status, detail)]
        time_s = float(time_s)
        self.frames_in += 1
        if self.first_time is None:
            self.first_time = time_s
            self.next_update = time_s + self.update_every_s
        self.last_time = time_s
        self.arrivals.add(time_s, np.zeros(1))
        started = time.perf_counter()
        face = self.tracker.update(rgb)
        if face is not None:
            self.colour.add(time_s, face.mean_rgb)
            if self.crops is not None and self.model is not None:
                self.crops.add(time_s, face_crop(rgb, face.box, self.model.crop_size))
        self.stage_seconds["face"] += time.perf_counter() - started
        updates = []
        assert self.next_update is not None
        while time_s >= self.next_update:
            updates.append(self._estimate(self.next_update))
            self.next_update += self.update_every_s
        return updates

    def push_audio(self, samples: np.ndarray, time_s: float, rate: int) -> Update | None:
        """Add an audio chunk whose first sample was captured at ``time_s``; a refusal
        update when it cannot be used, else ``None``."""
        data = np.asarray(samples, np.float32)
        if data.ndim == 2:
            data = data.mean(0)
        if data.ndim != 1 or not _finite(time_s) or not np.isfinite(data).all() or rate <= 0:
            self.audio_refused += 1
            return Update(float(time_s) if _finite(time_s) else float("nan"), None, 0.0,
                          self._method_name(), "bad_audio",
                          "audio must be finite mono/multi-channel samples with a finite "
                          f"timestamp and a positive rate (got shape {data.shape}, rate {rate})")
        if int(rate) != self.audio_rate:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(int(rate), self.audio_rate)
            data = resample_poly(data, self.audio_rate // g, int(rate) // g).astype(np.float32)
        self.audio.add(float(time_s), data)
        return None

    def _check_frame(self, rgb: object, time_s: float) -> tuple[str, str] | None:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            dtype = getattr(rgb, "dtype", type(rgb).__name__)
            return "bad_frame", f"expected an H×W×3 uint8 RGB frame, got {shape} {dtype}"
        if min(rgb.shape[:2]) < 16:
            return "bad_frame", f"frame of {rgb.shape[1]}×{rgb.shape[0]} is too small"
        if self.frame_shape is None:
            self.frame_shape = rgb.shape
        elif rgb.shape != self.frame_shape:
            return "bad_frame", (f"frame is {rgb.shape[1]}×{rgb.shape[0]} but this stream's "
                                 f"frames are {self.frame_shape[1]}×{self.frame_shape[0]}")
        if not _finite(time_s):
            return "bad_timestamp", f"timestamp {time_s!r} is not a finite number"
        if self.last_time is not None and float(time_s) <= self.last_time:
            kind = "frozen (repeats" if float(time_s) == self.last_time else "went backwards (to"
            return "bad_timestamp", (f"timestamp {kind} {float(time_s):.3f} s after "
                                     f"{self.last_time:.3f} s); frame dropped")
        return None

    # -- output -----------------------------------------------------------------------

    def _method_name(self) -> str:
        return self.model.name if self.model else self.method

    def _estimate(self, now: float) -> Update:
        started = time.perf_counter()
        try:
            return self._estimate_at(now)
        finally:
            self.stage_seconds["estimate"] += time.perf_counter() - started

    def _estimate_at(self, now: float) -> Update:
        assert self.first_time is not None
        window = self.model.window_s if self.model else self.window_s
        start = now - window
        audio_state = "none" if self.audio.end_time is None else (
            "ok" if self.audio.window(max(start, self.first_time), now) is not None
            else "missing")
        if start < self.first_time - 1e-6:
            return Update(now, None, 0.0, self._method_name(), "warming_up",
                          f"{now - self.first_time:.1f} of {window:.0f} s buffered",
                          audio=audio_state)
        colour = self.colour.window(start, now, self.rate)
        if colour is None:
            # frames covered the window, so the face was missing; else the stream stalled
            if self.arrivals.window(start, now, self.rate) is not None:
                status, detail = "no_face", "no face in part of the window"
            else:
                status, detail = "gap", "the stream stalled or was cut inside the window"
            return Update(now, None, 0.0, self._method_name(), status, detail,
                          audio=audio_state)
        if self.model is not None:
            update = self._model_estimate(start, now, colour[1])
            if update is not None:
                return update
            audio_state = "missing"
        hr = estimate_heart_rate(colour[1], self.rate, self.method)
        method = self.method if self.model is None else f"{self.method} (no audio)"
        peaks = hr.bpm_peaks if math.isfinite(hr.bpm_peaks) else None
        if hr.confidence < self.min_confidence or not math.isfinite(hr.bpm):
            return Update(now, None, hr.confidence, method, "low_signal",
                          f"pulse SNR {hr.snr_db:.1f} dB is too low to read a heart rate",
                          audio=audio_state)
        return Update(now, hr.bpm, hr.confidence, method, "ok", f"SNR {hr.snr_db:.1f} dB",
                      peaks, audio=audio_state)

    def _model_estimate(self, start: float, now: float, colour: np.ndarray) -> Update | None:
        assert self.model is not None and self.crops is not None
        spec = self.model
        crops = self.crops.window(start, now, spec.crop_rate)
        if crops is None:
            return Update(now, None, 0.0, spec.name, "no_face", "no face crops in the window")
        n = int(round(spec.window_s * spec.crop_rate))
        frames = _fit_length(crops[1], n)
        audio = self.audio.window(start, now, spec.audio_rate)
        if audio is not None:
            audio = _fit_length(audio, int(round(spec.window_s * spec.audio_rate)))
        if spec.needs_audio and audio is None:
            return None  # the caller falls back to the classical method
        from avfed.cardio.rppg import confidence_from_snr, pulse_signal, spectral_peak

        _, snr = spectral_peak(pulse_signal(colour, self.rate, self.method), self.rate)
        confidence = confidence_from_snr(snr)
        state = "ok" if audio is not None else "missing"
        if confidence < self.min_confidence:  # the same gate as the classical read-out
            return Update(now, None, confidence, spec.name, "low_signal",
                          f"pulse SNR {snr:.1f} dB is too low to read a heart rate",
                          audio=state)
        bpm = float(spec.predictor(frames, audio))
        return Update(now, bpm, confidence, spec.name, "ok",
                      f"{self.method.upper()} SNR {snr:.1f} dB", audio=state)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` samples of ``x`` (edge-padded at the front when one is missing to
    rounding)."""
    if len(x) >= n:
        return x[len(x) - n:]
    pad = [(n - len(x), 0)] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, pad, mode="edge")


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
