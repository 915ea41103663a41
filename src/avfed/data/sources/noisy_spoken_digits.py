"""The built-in ``noisy_spoken_digits`` corpus: the spoken digits as a microphone in a
room would record them.

Clean synthetic speech is easy: a logistic regression on per-band log-mel statistics
separates the clean ``spoken_digits`` at ~0.92 without learning anything. Real
recordings carry nuisances that such statistics cannot see through, so every
utterance here is passed through them, each drawn per utterance from the seed:

- a random position inside a longer window (the word is not centred);
- a random room: a synthetic impulse response (a direct path plus exponentially
  decaying noise with a random reverberation time) convolved with the speech;
- a random channel: a smooth equaliser curve (a tilt and a few peaks and notches
  in log-frequency) and a random gain;
- babble: several other synthetic voices speaking other words, anywhere in the
  window, at a low speech-to-babble ratio;
- background noise of a random colour (white, pink, brown or blue) at a random SNR.

The babble voices are not among the digit speakers, and the split is speaker-disjoint
as in ``spoken_digits``; the two sides also draw their babble from disjoint halves of
the babble pool. Corruption is vectorised (one batched FFT convolution), so only the
clean speech is synthesised and cached (by ``spoken_digits`` and here, for babble).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avfed.data.sources.audio_io import resample
from avfed.data.sources.espeak import SAMPLE_RATE
from avfed.data.sources.spoken_digits import (
    DIGIT_WORDS,
    default_cache_dir,
    load_spoken_digits,
    speaker_disjoint_split,
    speaker_table,
    synthesize_many,
)
from avfed.data.types import AudioSet

BABBLE_WORDS = ("water", "table", "morning", "yellow", "garden", "window", "people", "music",
                "paper", "river", "basket", "orange", "listen", "number", "coffee", "station",
                "open", "later", "hello", "because", "little", "monkey", "city", "summer")
BABBLE_VERSION = 1


@dataclass(frozen=True)
class Acoustics:
    """How hard the recording conditions are; the defaults are the built-in corpus."""

    sample_rate: int = 16000
    window_s: float = 1.0  # the word lies somewhere inside this window
    rt60_s: tuple[float, float] = (0.1, 0.7)  # reverberation time of the room
    direct_gain: tuple[float, float] = (0.2, 1.0)  # direct path vs reverberant tail
    eq_db: float = 12.0  # largest peak / notch of the channel's equaliser
    tilt_db: float = 12.0  # largest spectral tilt across the band
    babble_voices: tuple[int, int] = (2, 5)
    babble_snr_db: tuple[float, float] = (0.0, 10.0)  # speech vs babble
    noise_snr_db: tuple[float, float] = (5.0, 20.0)  # speech vs coloured noise
    gain_db: tuple[float, float] = (-15.0, 5.0)


CLEAN = Acoustics(rt60_s=(0.0, 0.0), direct_gain=(1.0, 1.0), eq_db=0.0, tilt_db=0.0,
                  babble_voices=(0, 0), noise_snr_db=(200.0, 200.0), gain_db=(0.0, 0.0))


def load_babble(seed: int = 0, voices: int = 12, cache_dir: str | Path | None = None
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Non-digit words from ``voices`` synthetic voices (cached); returns the waveforms
    at espeak's rate and the voice of each."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir().parent / "babble"
    settings = {"version": BABBLE_VERSION, "seed": seed, "voices": voices}
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{tag}.npz"
    if path.exists():
        try:
            with np.load(path) as cached:
                lengths, flat = cached["lengths"], cached["samples"]
                return np.split(flat, np.cumsum(lengths)[:-1]), cached["voices"]
        except Exception:  # noqa: BLE001 - an unreadable cache is regenerated below
            pass
    # voices from a seed stream the digit speakers never use
    table = speaker_table(voices, seed + 7919)
    rng = np.random.default_rng([seed, 0xBA])
    requests, owners = [], []
    for spk in table:
        for word in rng.choice(BABBLE_WORDS, 8, replace=False):
            requests.append({"text": str(word), "voice": spk.voice, "pitch": spk.pitch,
                             "pitch_range": spk.pitch_range, "speed": spk.speed})
            owners.append(spk.id)
    waves = synthesize_many(requests)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # processes warming it never collide
    np.savez(tmp, samples=np.concatenate(waves), lengths=np.array([len(w) for w in waves]),
             voices=np.array(owners))
    tmp.replace(path)
    return waves, np.array(owners)


def _place(waves: list[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Each wave at a random offset in a zero window (cut if longer than the window)."""
    out = np.zeros((len(waves), length), np.float32)
    for i, wave in enumerate(waves):
        wave = wave[:length]
        start = int(rng.integers(0, length - len(wave) + 1))
        out[i, start : start + len(wave)] = wave
    return out


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-12)


def _room_and_channel(speech: np.ndarray, acoustics: Acoustics,
                      rng: np.random.Generator) -> np.ndarray:
    """Convolve with a random room impulse response and apply a random EQ curve, both
    in one batched FFT (the output keeps the window's length: the tail is cut)."""
    n, length = speech.shape
    rate = acoustics.sample_rate
    rir_len = int(max(acoustics.rt60_s[1], 0.01) * rate)
    t = np.arange(rir_len) / rate
    rt60 = rng.uniform(*acoustics.rt60_s, size=(n, 1))
    decay = np.exp(-6.9 * t / np.maximum(rt60, 1e-3))  # -60 dB at t = RT60
    tail = rng.standard_normal((n, rir_len)) * decay * (rt60 > 0)
    tail[:, : int(0.002 * rate)] = 0.0  # the first reflections arrive after the direct path
    tail /= np.sqrt(np.sum(tail**2, axis=1, keepdims=True)) + 1e-12
    rir = tail * (1 - rng.uniform(*acoustics.direct_gain, size=(n, 1)))
    rir[:, 0] += rng.uniform(*acoustics.direct_gain, size=n)
    size = 1 << int(np.ceil(np.log2(length + rir_len)))
    spectrum = np.fft.rfft(speech, size) * np.fft.rfft(rir, size)
    # equaliser: a tilt plus three Gaussian bumps over log-frequency, in dB
    freqs = np.fft.rfftfreq(size, 1 / rate)
    logf = np.log2(np.clip(freqs, 50.0, None) / 50.0) / np.log2(rate / 2 / 50.0)  # 0..1
    curve = acoustics.tilt_db * rng.uniform(-1, 1, (n, 1)) * (logf - 0.5)
    for _ in range(3):
        centre, width = rng.uniform(0, 1, (n, 1)), rng.uniform(0.03, 0.15, (n, 1))
        curve += acoustics.eq_db * rng.uniform(-1, 1, (n, 1)) * np.exp(
            -0.5 * ((logf - centre) / width) ** 2)
    spectrum *= 10 ** (curve / 20)
    return np.fft.irfft(spectrum, size)[:, :length].astype(np.float32)


def coloured_noise(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a power spectrum ∝ f^-β, β drawn from {-1, 0, 1, 2} (blue,
    white, pink, brown) per row."""
    beta = rng.choice([-1.0, 0.0, 1.0, 2.0], size=(n, 1))
    spectrum = np.fft.rfft(rng.standard_normal((n, length)), axis=1)
    freqs = np.fft.rfftfreq(length)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum * freqs[None, :] ** (-beta / 2), length, axis=1)
    return (noise / _rms(noise)).astype(np.float32)


def corrupt(waves: list[np.ndarray], rate: int, babble: list[np.ndarray], seed: int,
            acoustics: Acoustics = Acoustics()) -> np.ndarray:
    """The recording of each clean ``waves[i]`` (at ``rate``) under random conditions:
    ``[N, window]`` float32 at ``acoustics.sample_rate``, peak at most 1."""
    rng = np.random.default_rng(seed)
    target = acoustics.sample_rate
    length = int(round(acoustics.window_s * target))
    speech = _place([resample(w, rate, target) for w in waves], length, rng)
    speech_rms = _rms(speech)
    out = _room_and_channel(speech, acoustics, rng)
    out *= speech_rms / _rms(out)  # the room and channel change timbre, not loudness
    n = len(waves)
    low, high = acoustics.babble_voices
    if high > 0 and babble:
        pool = [resample(b, rate, target) for b in babble]
        counts = rng.integers(low, high + 1, size=n)
        voices = np.zeros_like(out)
        for k in range(high):
            picks = [pool[int(j)] for j in rng.integers(len(pool), size=n)]
            voices += _place(picks, length, rng) * (counts > k)[:, None]
        snr = rng.uniform(*acoustics.babble_snr_db, size=(n, 1))
        scale = speech_rms / _rms(voices) * 10 ** (-snr / 20) * (counts > 0)[:, None]
        out += voices * scale
    snr = rng.uniform(*acoustics.noise_snr_db, size=(n, 1))
    out += coloured_noise(n, length, rng) * speech_rms * 10 ** (-snr / 20)
    out *= 10 ** (rng.uniform(*acoustics.gain_db, size=(n, 1)) / 20)
    peak = np.abs(out).max(axis=1, keepdims=True)
    out /= np.maximum(peak, 1.0)  # never clip: a louder draw is scaled back to full scale
    return out.astype(np.float32)


def load_noisy_spoken_digits(*, num_speakers: int = 40, repeats: int = 2,
                             test_fraction: float = 0.2, seed: int = 0,
                             acoustics: Acoustics = Acoustics(),
                             cache_dir: str | Path | None = None,
                             ) -> tuple[AudioSet, AudioSet]:
    """A speaker-disjoint (train, test) pair of noisy recordings at
    ``acoustics.sample_rate``, each ``acoustics.window_s`` long."""
    clean = load_spoken_digits(num_speakers=num_speakers, repeats=repeats, seed=seed,
                               cache_dir=cache_dir)
    babble_dir = None if cache_dir is None else Path(cache_dir) / "babble"
    babble, voices = load_babble(seed, cache_dir=babble_dir)
    train, test = speaker_disjoint_split(clean, test_fraction, seed)
    half = voices < np.median(voices)  # disjoint babble voices for the two sides
    sides = []
    for stream, (part, mine) in enumerate(((train, half), (test, ~half))):
        pool = [b for b, keep in zip(babble, mine, strict=True) if keep]
        noisy = corrupt(part.waveforms, clean.sample_rate, pool, seed * 2 + stream + 1,
                        acoustics)
        sides.append(AudioSet(list(noisy), part.labels, list(DIGIT_WORDS),
                              acoustics.sample_rate, part.speakers))
    return sides[0], sides[1]


__all__ = ["SAMPLE_RATE", "Acoustics", "corrupt", "load_babble", "load_noisy_spoken_digits"]
