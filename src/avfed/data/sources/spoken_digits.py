"""The built-in ``spoken_digits`` corpus: "zero" … "nine" spoken by synthetic speakers.

A speaker is an espeak-ng voice (an English accent, or another language's voice reading
the English word) with a voice variant, a pitch, a pitch range and a speed, all drawn
from the seed; each repetition jitters pitch and speed a little, as a person would.
The corpus is cached as 16-bit WAV files plus a manifest after the first generation,
in a folder named by a hash of its settings, so a different seed never reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from avfed.data.sources.espeak import SAMPLE_RATE, speak_isolated
from avfed.data.types import AudioSet

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CORPUS_VERSION = 1  # bump when generation changes, so stale caches are not reused

_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
            "en-029", "en-us-nyc", "de", "nl", "af", "fr", "es", "it", "pt", "sv", "pl", "hi")
_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
             "croak", "klatt", "whisper")
_SILENCE_DB = -40.0  # frames quieter than this (relative to the peak) are trimmed


@dataclass(frozen=True)
class SpeakerSpec:
    id: int
    voice: str  # espeak voice name, e.g. "en-gb-scotland+f3"
    pitch: int  # 0–99, espeak's base pitch
    pitch_range: int  # 0–99, intonation range
    speed: int  # words per minute

    @property
    def description(self) -> str:
        return f"{self.voice} pitch={self.pitch} range={self.pitch_range} speed={self.speed}wpm"


def speaker_table(num_speakers: int, seed: int) -> list[SpeakerSpec]:
    """``num_speakers`` distinct synthetic speakers, the same for the same seed."""
    if num_speakers < 1:
        raise ValueError(f"num_speakers must be >= 1, got {num_speakers}")
    rng = np.random.default_rng([seed, 0x5D])
    speakers: list[SpeakerSpec] = []
    for i in range(num_speakers):
        accent = _ACCENTS[i % len(_ACCENTS)]  # cycle accents so small tables still vary
        variant = _VARIANTS[int(rng.integers(len(_VARIANTS)))]
        voice = f"{accent}+{variant}" if variant else accent
        speakers.append(SpeakerSpec(i, voice, int(rng.integers(20, 80)),
                                    int(rng.integers(20, 90)), int(rng.integers(120, 220))))
    return speakers


def trim_silence(wave: np.ndarray, frame: int = 256) -> np.ndarray:
    """Cut leading and trailing frames more than 40 dB below the loudest frame."""
    if len(wave) == 0:
        return wave
    n = len(wave) // frame
    energy = np.sqrt((wave[: n * frame].reshape(n, frame) ** 2).mean(1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > _SILENCE_DB)
    if len(loud) == 0:
        return wave[:0]
    return wave[loud[0] * frame : (loud[-1] + 1) * frame]


def synthesize_many(requests: list[dict]) -> list[np.ndarray]:
    """Speak each request (``text``, ``voice``, ``pitch``, ``pitch_range``, ``speed``).

    Float32 mono at 22,050 Hz with silence trimmed; bit-identical for identical requests
    whatever else is synthesised around them. Raises if an utterance comes out silent.
    """
    waves = []
    for req, raw in zip(requests, speak_isolated(requests), strict=True):
        wave = trim_silence(raw)
        if len(wave) == 0 or np.sqrt(np.mean(wave**2)) < 1e-3:
            raise RuntimeError(f"espeak-ng produced silence for {req['text']!r} with voice "
                               f"'{req['voice']}'")
        waves.append(np.clip(wave, -1.0, 1.0).astype(np.float32))
    return waves


def synthesize(text: str, voice: str, *, pitch: int = 50, pitch_range: int = 50,
               speed: int = 175) -> np.ndarray:
    """Speak one ``text``; see :func:`synthesize_many`."""
    request = {"text": text, "voice": voice, "pitch": pitch, "pitch_range": pitch_range,
               "speed": speed}
    return synthesize_many([request])[0]


def default_cache_dir() -> Path:
    return Path(os.environ.get("AVFED_CACHE", Path.home() / ".cache" / "avfed")) / "spoken_digits"


def _plan(speakers: list[SpeakerSpec], repeats: int, seed: int) -> list[dict]:
    """Every utterance to produce, with its jittered pitch/speed (deterministic)."""
    rng = np.random.default_rng([seed, 0xD1])
    plan = []
    for spk in speakers:
        for digit, word in enumerate(DIGIT_WORDS):
            for rep in range(repeats):
                plan.append({
                    "file": f"s{spk.id:03d}_{digit}_{rep}.wav", "digit": digit, "speaker": spk.id,
                    "voice": spk.voice,
                    "pitch": int(np.clip(spk.pitch + rng.integers(-6, 7), 0, 99)),
                    "pitch_range": spk.pitch_range,
                    "speed": int(spk.speed * rng.uniform(0.9, 1.1)),
                    "text": word,
                })
    return plan


def _write_wav(path: Path, wave: np.ndarray) -> None:
    # a per-process name: simulation actors warming the same cache never share a temp file
    tmp = path.with_suffix(f".{os.getpid()}.tmp.wav")
    sf.write(tmp, wave, SAMPLE_RATE, subtype="PCM_16")
    tmp.replace(path)  # atomic: an interrupted run never leaves a half-written file


def _read_cached(path: Path) -> np.ndarray | None:
    try:
        wave, rate = sf.read(path, dtype="float32")
    except Exception as err:  # noqa: BLE001 - any decode failure means "regenerate"
        warnings.warn(f"cached utterance {path} is unreadable ({err}); regenerating it",
                      stacklevel=3)
        return None
    if rate != SAMPLE_RATE or wave.ndim != 1 or len(wave) == 0:
        warnings.warn(f"cached utterance {path} is not mono {SAMPLE_RATE} Hz audio; "
                      "regenerating it", stacklevel=3)
        return None
    return wave


def load_spoken_digits(*, num_speakers: int = 40, repeats: int = 2, seed: int = 0,
                       cache_dir: str | Path | None = None, progress: bool = False) -> AudioSet:
    """The corpus as an :class:`AudioSet` (labels = digit, speakers = speaker id).

    Defaults: 40 speakers × 10 digits × 2 repetitions = 800 utterances.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    speakers = speaker_table(num_speakers, seed)
    settings = {"version": CORPUS_VERSION, "num_speakers": num_speakers, "repeats": repeats,
                "seed": seed}
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / tag
    folder.mkdir(parents=True, exist_ok=True)
    plan = _plan(speakers, repeats, seed)

    waves: list[np.ndarray | None] = [
        _read_cached(folder / item["file"]) if (folder / item["file"]).exists() else None
        for item in plan
    ]
    missing = [i for i, wave in enumerate(waves) if wave is None]
    for start in _batches(len(missing), progress, "synthesising spoken digits"):
        batch = missing[start : start + _BATCH]
        for i, wave in zip(batch, synthesize_many([plan[i] for i in batch]), strict=True):
            _write_wav(folder / plan[i]["file"], wave)
            # reload what was written so a fresh corpus equals a cached one bit for bit
            waves[i] = sf.read(folder / plan[i]["file"], dtype="float32")[0]
    manifest = {"settings": settings, "speakers": [
        {**asdict(s), "description": s.description} for s in speakers], "utterances": plan}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    labels = np.array([p["digit"] for p in plan], np.int64)
    speaker_ids = np.array([p["speaker"] for p in plan], np.int64)
    complete = [w for w in waves if w is not None]
    return AudioSet(complete, labels, list(DIGIT_WORDS), SAMPLE_RATE, speaker_ids)


def speaker_disjoint_split(data: AudioSet, test_fraction: float = 0.2,
                           seed: int = 0) -> tuple[AudioSet, AudioSet]:
    """Whole speakers go to the test side, so evaluation measures unseen voices."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    assert data.speakers is not None
    ids = np.unique(data.speakers)
    if len(ids) < 2:
        raise ValueError("a speaker-disjoint split needs at least 2 speakers")
    rng = np.random.default_rng(seed)
    n_test = min(len(ids) - 1, max(1, int(round(len(ids) * test_fraction))))
    test_ids = rng.choice(ids, n_test, replace=False)
    is_test = np.isin(data.speakers, test_ids)
    return data.subset(np.flatnonzero(~is_test)), data.subset(np.flatnonzero(is_test))


_BATCH = 100  # utterances per synthesis batch: the unit of progress reporting


def _batches(total: int, progress: bool, label: str) -> Iterator[int]:
    """Batch start offsets, with a rich progress bar when asked and there is work."""
    starts = range(0, total, _BATCH)
    if not progress or total == 0:
        yield from starts
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        for start in starts:
            yield start
            bar.update(task, completed=min(total, start + _BATCH))
