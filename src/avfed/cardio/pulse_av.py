"""``pulse_av``: built-in talking-face clips with a known, time-varying heart rate.

No public corpus pairs face video, speech and a reference pulse under a licence that
lets it ship, so the built-in data are made offline, deterministically by seed:

* **Face.** scikit-image's bundled colour portrait (``astronaut``), cropped around the
  face. Subjects differ by skin tone (the skin pixels are darkened or lightened toward
  another tone), mirroring and framing; the photograph is one person, so the subjects
  are variations of one face, not different people — that is stated wherever results
  are reported.
* **Pulse.** A PPG waveform with a systolic peak, a dicrotic notch and a diastolic wave,
  driven by an instantaneous heart rate that drifts slowly, breathes (respiratory sinus
  arrhythmia) and jitters beat to beat (heart-rate variability). The skin's colour is
  modulated with the blood-volume pulse signature of skin (strongest in green), about
  half a percent, as camera rPPG sees it.
* **Nuisances.** Head motion (translation and rotation), lighting drift, sensor noise,
  8-bit quantisation and JPEG compression of every frame, and a frame clock that changes
  rate (for example 15 → 30 → 24 FPS) with timing jitter.
* **Audio.** espeak-ng speech (one voice per subject, offline) whose loudness is weakly
  modulated by the same pulse, the assumption CardioNet's audio branch rests on; voice
  carries far less of it than skin in reality, so the modulation is kept weak.

Ground truth is the instantaneous heart rate (BPM) and the PPG waveform on a fine grid.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

GT_RATE = 100.0  # Hz: the grid the ground-truth heart rate and PPG are kept on
AUDIO_RATE = 16000  # Hz: the audio track's rate
# blood-volume pulse signature of skin, normalised to green (de Haan & van Leest 2014)
PULSE_SIGNATURE = np.array([0.33, 0.77, 0.53], np.float32) / 0.77
DEFAULT_FPS_PLAN = ((15.0, 1 / 3), (30.0, 1 / 3), (24.0, 1 / 3))  # (fps, share of duration)
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "please call me back when you get this message",
    "we will meet at the station at nine in the morning",
    "it is a sunny day and the park is full of people",
    "can you hear me clearly now or should I speak louder",
    "my heart beats a little faster when I talk about work",
    "the weather report says it will rain later this week",
    "thank you for joining the call today everyone",
)
_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
_VARIANTS = ("m1", "f1", "m3", "f3", "m2", "f2")


@dataclass(frozen=True)
class SubjectSpec:
    """Everything that makes one synthetic subject: face variant, heart and voice."""

    id: int
    skin_tone: float  # multiplies skin colour: < 1 darker, > 1 lighter
    tint: tuple[float, float, float]  # per-channel skin colour factors (undertone)
    mirror: bool
    zoom: float  # framing: >= 1, larger is closer
    base_bpm: float
    drift_bpm: float  # amplitude of the slow heart-rate drift
    drift_period_s: float
    rsa_bpm: float  # respiratory sinus arrhythmia amplitude
    breath_period_s: float
    pulse_amplitude: float  # relative skin-colour modulation in green
    voice: str
    pitch: int
    speed: int


def subject_table(num_subjects: int, seed: int = 0) -> list[SubjectSpec]:
    """``num_subjects`` distinct subjects, the same for the same seed."""
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
    rng = np.random.default_rng([seed, 0xCA4D])
    subjects = []
    for i in range(num_subjects):
        tone = float(np.clip(1.0 - 0.55 * ((i * 0.37) % 1.0) + rng.uniform(-0.05, 0.05),
                             0.35, 1.15))
        tint = tuple(float(x) for x in rng.uniform(0.92, 1.08, 3))
        subjects.append(SubjectSpec(
            id=i, skin_tone=tone, tint=tint,  # type: ignore[arg-type]
            mirror=bool(i % 2), zoom=float(rng.uniform(1.0, 1.25)),
            base_bpm=float(rng.uniform(58, 105)), drift_bpm=float(rng.uniform(4, 14)),
            drift_period_s=float(rng.uniform(25, 60)), rsa_bpm=float(rng.uniform(1, 3)),
            breath_period_s=float(rng.uniform(3.5, 6.0)),
            pulse_amplitude=float(rng.uniform(0.006, 0.012)),
            voice=f"{_VOICES[i % len(_VOICES)]}+{_VARIANTS[(i // 2) % len(_VARIANTS)]}",
            pitch=int(rng.integers(25, 75)), speed=int(rng.integers(140, 190)),
        ))
    return subjects


# -- the heart -----------------------------------------------------------------------------

def heart_rate_curve(spec: SubjectSpec, duration_s: float, seed: int = 0) -> np.ndarray:
    """Instantaneous heart rate (BPM) on the ``GT_RATE`` grid over ``duration_s``."""
    n = int(np.ceil(duration_s * GT_RATE)) + 1
    t = np.arange(n) / GT_RATE
    rng = np.random.default_rng([seed, spec.id, 0x4B])
    phase = rng.uniform(0, 2 * np.pi, 2)
    hr = (spec.base_bpm + spec.drift_bpm * np.sin(2 * np.pi * t / spec.drift_period_s + phase[0])
          + spec.rsa_bpm * np.sin(2 * np.pi * t / spec.breath_period_s + phase[1]))
    # beat-to-beat variability: low-passed noise (about 1 BPM, correlated over ~1 s)
    noise = rng.normal(0, 1, n)
    kernel = np.hanning(int(GT_RATE)) / np.hanning(int(GT_RATE)).sum()
    hrv = np.convolve(noise, kernel, mode="same")
    hrv *= 1.0 / max(hrv.std(), 1e-9)
    return np.clip(hr + hrv, 42, 170)


def pulse_shape(phase: np.ndarray) -> np.ndarray:
    """One beat of PPG at ``phase`` in [0, 1): a steep systolic rise and peak, a dicrotic
    notch and a smaller diastolic wave, then a slow decay (zero-mean, peak about 1)."""
    p = np.mod(phase, 1.0)
    systolic = np.exp(-0.5 * ((p - 0.18) / 0.065) ** 2)
    diastolic = 0.45 * np.exp(-0.5 * ((p - 0.46) / 0.09) ** 2)
    notch = -0.12 * np.exp(-0.5 * ((p - 0.34) / 0.03) ** 2)
    wave = systolic + diastolic + notch
    return wave - 0.24  # the mean of one beat, so the trace is about zero-mean


def ppg_from_rate(hr: np.ndarray, rate: float = GT_RATE) -> np.ndarray:
    """The PPG waveform whose beats follow the instantaneous rate ``hr`` (BPM)."""
    phase = np.cumsum(hr / 60.0) / rate
    return pulse_shape(phase).astype(np.float32)


# -- the clip ------------------------------------------------------------------------------

@dataclass
class PulseClip:
    """A rendered clip and its ground truth.

    ``frame_times`` are the frames' capture times (s, irregular); the audio's first
    sample is at ``audio_start_s`` on the same clock; ``hr``/``ppg`` are on a
    ``GT_RATE`` grid from time 0.
    """

    subject: SubjectSpec
    frames: np.ndarray  # uint8 [T, H, W, 3]
    frame_times: np.ndarray  # float64 [T]
    audio: np.ndarray | None  # float32 [N] at AUDIO_RATE
    audio_start_s: float
    hr: np.ndarray
    ppg: np.ndarray
    face_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, w, h at rest (for tests)
    meta: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (len(self.hr) - 1) / GT_RATE

    def true_bpm(self, start_s: float, end_s: float) -> float:
        """Mean instantaneous heart rate over ``[start_s, end_s]`` (the reference an
        estimate over that window is scored against)."""
        a = int(np.clip(round(start_s * GT_RATE), 0, len(self.hr) - 1))
        b = int(np.clip(round(end_s * GT_RATE), a + 1, len(self.hr)))
        return float(self.hr[a:b].mean())


def frame_schedule(duration_s: float, fps_plan=DEFAULT_FPS_PLAN, jitter: float = 0.08,
                   seed: int = 0) -> np.ndarray:
    """Capture times over ``duration_s`` whose rate follows ``fps_plan`` (pairs of FPS
    and share of the duration), each interval jittered by ``±jitter`` of itself."""
    rng = np.random.default_rng([seed, 0xF9])
    shares = np.array([s for _, s in fps_plan], float)
    bounds = np.concatenate([[0.0], np.cumsum(shares / shares.sum()) * duration_s])
    times, t = [], 0.0
    for (fps, _), end in zip(fps_plan, bounds[1:], strict=True):
        while t < end - 1e-9:
            times.append(t)
            t += (1.0 / fps) * (1.0 + rng.uniform(-jitter, jitter))
    return np.asarray(times, np.float64)


def _face_photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()[10:250, 130:450]  # 240 x 320: the head, a third of the width


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin probability in [0, 1] from the classic YCrCb box (Chai & Ngan 1999), smoothed."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    cr, cb = ycc[..., 1], ycc[..., 2]
    mask = ((cr > 135) & (cr < 180) & (cb > 80) & (cb < 130) & (ycc[..., 0] > 40))
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)


def _subject_face(spec: SubjectSpec, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The subject's base frame (float32 RGB, slightly larger than ``size`` to leave room
    for motion) and its skin mask."""
    import cv2

    photo = _face_photo()
    if spec.mirror:
        photo = np.ascontiguousarray(photo[:, ::-1])
    mask = skin_mask(photo)
    h, w = photo.shape[:2]
    ch, cw = int(h / spec.zoom), int(w / spec.zoom)
    top, left = (h - ch) // 2, (w - cw) // 2
    photo = photo[top:top + ch, left:left + cw]
    mask = mask[top:top + ch, left:left + cw]
    width, height = size
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA)
    tone = spec.skin_tone * np.asarray(spec.tint, np.float32)
    toned = photo * (1 + mask[..., None] * (tone[None, None, :] - 1))
    return np.clip(toned, 0, 255), mask


def render_clip(spec: SubjectSpec, duration_s: float = 20.0, size: tuple[int, int] = (160, 120),
                fps_plan=DEFAULT_FPS_PLAN, seed: int = 0, audio: bool = True,
                audio_offset_s: float = 0.0, jpeg_quality: int = 80,
                noise_sigma: float = 1.5, motion_px: float = 2.0) -> PulseClip:
    """Render ``spec``'s clip: frames at the irregular times of ``fps_plan``, audio whose
    first sample is at ``audio_offset_s`` (positive: audio starts late), ground truth."""
    import cv2

    rng = np.random.default_rng([seed, spec.id, 0xF0])
    hr = heart_rate_curve(spec, duration_s, seed)
    ppg = ppg_from_rate(hr)
    times = frame_schedule(duration_s, fps_plan, seed=seed * 1000 + spec.id)
    width, height = size
    base, mask = _subject_face(spec, (width, height))
    pulsing = (base * mask[..., None] * PULSE_SIGNATURE[None, None, :]).astype(np.float32)
    scale = width / 160.0
    ph = rng.uniform(0, 2 * np.pi, 4)
    # sensor noise drawn from a bank of independent fields, picked at random per frame:
    # drawing a fresh field per frame would dominate the rendering time
    bank = rng.normal(0, noise_sigma, (12, height, width, 3)).astype(np.float32)
    picks = rng.integers(0, len(bank), len(times))
    pulse_at = np.interp(times, np.arange(len(ppg)) / GT_RATE, ppg)
    frames = np.empty((len(times), height, width, 3), np.uint8)
    for i, t in enumerate(times):
        light = 1.0 + 0.05 * np.sin(2 * np.pi * t / 13.0 + ph[0]) + 0.04 * t / duration_s
        frame = cv2.addWeighted(base, light, pulsing,
                                light * spec.pulse_amplitude * pulse_at[i], 0.0)
        dx = motion_px * scale * (np.sin(2 * np.pi * t / 5.3 + ph[1]) + 0.3 * np.sin(t * 4.1))
        dy = 0.7 * motion_px * scale * np.sin(2 * np.pi * t / 7.1 + ph[2])
        angle = 1.5 * np.sin(2 * np.pi * t / 9.7 + ph[3])
        m = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        m[:, 2] += (dx, dy)
        frame = cv2.warpAffine(frame, m, (width, height), borderMode=cv2.BORDER_REFLECT)
        if noise_sigma > 0:
            frame = cv2.add(frame, bank[picks[i]])
        frame8 = cv2.convertScaleAbs(frame)  # rounds and saturates to 0..255
        if jpeg_quality < 100:
            ok, buf = cv2.imencode(".jpg", frame8, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            frame8 = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        frames[i] = frame8
    track = speech_track(spec, duration_s, ppg, seed, audio_offset_s) if audio else None
    return PulseClip(spec, frames, times, track, audio_offset_s, hr, ppg,
                     meta={"fps_plan": [list(x) for x in fps_plan], "seed": seed,
                           "size": [width, height]})


# -- the voice -----------------------------------------------------------------------------

def _speech(spec: SubjectSpec) -> list[np.ndarray]:
    """The subject's sentences at ``AUDIO_RATE`` (espeak-ng, offline, cached per voice)."""
    from scipy.signal import resample_poly

    from avfed.data.sources.spoken_digits import synthesize_many

    key = hashlib.sha1(f"{spec.voice}|{spec.pitch}|{spec.speed}".encode()).hexdigest()[:16]
    cache = cache_dir() / "speech" / f"{key}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return [z[f"s{i}"] for i in range(len(SENTENCES))]
    requests = [{"text": s, "voice": spec.voice, "pitch": spec.pitch, "pitch_range": 50,
                 "speed": spec.speed} for s in SENTENCES]
    waves = [resample_poly(w, 320, 441).astype(np.float32) for w in synthesize_many(requests)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.npz")
    np.savez(tmp, **{f"s{i}": w for i, w in enumerate(waves)})
    tmp.replace(cache)
    return waves


def speech_track(spec: SubjectSpec, duration_s: float, ppg: np.ndarray, seed: int,
                 audio_offset_s: float = 0.0, modulation: float = 0.2) -> np.ndarray:
    """Sentences with pauses filling the clip; loudness modulated by the pulse (weakly:
    ``modulation`` of the envelope), plus a little room noise."""
    rng = np.random.default_rng([seed, spec.id, 0xA0])
    sentences = _speech(spec)
    n = int(round(duration_s * AUDIO_RATE))
    track = np.zeros(n, np.float32)
    pos = int(rng.uniform(0.1, 0.4) * AUDIO_RATE)
    order = rng.permutation(len(sentences))
    k = 0
    while pos < n:
        wave = sentences[order[k % len(order)]]
        end = min(n, pos + len(wave))
        track[pos:end] = wave[:end - pos] * (0.5 / max(np.abs(wave).max(), 1e-6))
        pos = end + int(rng.uniform(0.25, 0.7) * AUDIO_RATE)
        k += 1
    t = audio_offset_s + np.arange(n) / AUDIO_RATE
    pulse = np.interp(t, np.arange(len(ppg)) / GT_RATE, ppg).astype(np.float32)
    track *= 1.0 + modulation * pulse
    track += rng.normal(0, 0.003, n).astype(np.float32)
    return np.clip(track, -1, 1).astype(np.float32)


# -- files ---------------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("AVFED_CACHE", Path.home() / ".cache" / "avfed")) / "pulse_av"


def write_clip(clip: PulseClip, path: str | Path, crf: int = 10) -> Path:
    """Write ``clip`` as an MP4 (H.264 + AAC) or, for a ``.webm`` path, WebM (VP8 + Opus),
    whose frames keep their irregular capture times (millisecond timestamps, variable
    frame rate) and whose audio starts at ``audio_start_s``, plus ``<path>.json`` with
    the ground truth (1 Hz BPM series).

    H.264 at its usual quality (crf 18 and above) skips the sub-level colour changes of
    the pulse in static regions and erases most of it, as heavy compression does to real
    rPPG; the default crf 10 keeps it."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = clip.frames.shape[1:3]
    webm = path.suffix == ".webm"  # VP8 + Opus: what every browser plays
    with av.open(str(path), "w", format="webm" if webm else None) as out:
        video = out.add_stream("libvpx" if webm else "libx264", rate=1000)  # 1 ms ticks
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, 1000)
        video.options = ({"crf": "4", "b:v": "20M", "qmin": "0", "qmax": "8",
                          "deadline": "realtime", "cpu-used": "8"} if webm
                         else {"crf": str(crf), "preset": "veryfast"})
        audio, rate = None, 48000 if webm else AUDIO_RATE
        if clip.audio is not None:
            audio = out.add_stream("libopus" if webm else "aac", rate=rate)
            audio.layout = "mono"
        for frame_rgb, t in zip(clip.frames, clip.frame_times, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio is not None and clip.audio is not None:
            samples = clip.audio
            if rate != AUDIO_RATE:
                from scipy.signal import resample_poly

                samples = resample_poly(samples, rate, AUDIO_RATE).astype(np.float32)
            start = int(round(clip.audio_start_s * rate))
            if start < 0:  # audio before time 0 is cut: a track cannot start before the file
                samples, start = samples[-start:], 0
            chunk = 960 if webm else 1024
            for i in range(0, len(samples) - chunk + 1, chunk):
                block = samples[i:i + chunk][None, :]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp",
                                                   layout="mono")
                frame.sample_rate = rate
                frame.pts, frame.time_base = start + i, Fraction(1, rate)
                out.mux(audio.encode(frame))
            out.mux(audio.encode())
    truth = {"subject": asdict(clip.subject), "audio_start_s": clip.audio_start_s,
             "bpm_1hz": [round(float(x), 3) for x in clip.hr[::int(GT_RATE)]],
             "meta": clip.meta}
    Path(f"{path}.json").write_text(json.dumps(truth, indent=1))
    return path


def demo_clip(path: str | Path | None = None, subject: int = 0, duration_s: float = 20.0,
              size: tuple[int, int] = (320, 240), seed: int = 0, suffix: str = ".mp4") -> Path:
    """A cached demo MP4 of one subject (what ``avfed cardio run pulse_av`` and the page
    play); generated once, reused after."""
    spec = subject_table(max(subject + 1, 1), seed)[subject]
    name = f"demo_s{subject}_{int(duration_s)}s_{size[0]}x{size[1]}_seed{seed}{suffix}"
    target = Path(path) if path else cache_dir() / name
    if not target.exists():
        clip = render_clip(spec, duration_s, size=size, seed=seed)
        tmp = target.with_name(f".{os.getpid()}.{target.name}")
        write_clip(clip, tmp)
        Path(f"{tmp}.json").replace(f"{target}.json")
        tmp.replace(target)
    return target
