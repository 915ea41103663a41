"""Speech Commands v2 (Warden, 2018) in its published layout.

``root/<word>/<speaker>_nohash_<n>.wav``, one-second 16 kHz utterances, with
``validation_list.txt`` and ``testing_list.txt`` naming the held-out files (paths
relative to the root); every other file is training data. The official split hashes
the speaker id, so a speaker sits in one split only: evaluation measures unseen
voices. ``_background_noise_`` holds long noise recordings, not words, and is left
out. Each word folder is a class (all 35 words; ``words`` narrows them, e.g. to the 10
command words; the 12-class "unknown"/"silence" task is not built here).

Speaker ids are the part of the file name before ``_nohash_``; the returned
``speaker_names`` maps the integer ids in each set's ``speakers`` back to them (-1
where a name has no ``_nohash_``). Clips are mono at ``sample_rate`` and fitted to
``clip_seconds`` (most are exactly one second; shorter ones are zero-padded at both
ends, see :func:`avfed.data.sources.audio_io.fit_length`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avfed.data.sources.audio_io import clip_samples, read_clip, skip
from avfed.data.types import AudioSet, SkippedFile

SPLIT_LISTS = {"validation": "validation_list.txt", "test": "testing_list.txt"}
SPEAKER_SEPARATOR = "_nohash_"


@dataclass
class SpeechCommandsSplits:
    """The official splits; each set's ``skipped`` lists its own unreadable files."""

    train: AudioSet
    validation: AudioSet
    test: AudioSet
    speaker_names: list[str]


def speaker_of(filename: str) -> str | None:
    """``"bb05582b_nohash_3.wav"`` → ``"bb05582b"``; ``None`` without ``_nohash_``."""
    head, sep, _ = filename.partition(SPEAKER_SEPARATOR)
    return head if sep else None


def _read_list(root: Path, name: str) -> set[str]:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"Speech Commands split list not found: expected {path} "
                                "(the dataset root must hold validation_list.txt and "
                                "testing_list.txt beside the word folders)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _word_folders(root: Path, words: Sequence[str] | None) -> list[str]:
    available = sorted(p.name for p in root.iterdir()
                       if p.is_dir() and not p.name.startswith((".", "_")))
    if not available:
        raise ValueError(f"{root} has no word folders; expected {root}/<word>/<file>.wav")
    if words is None:
        return available
    unknown = sorted(set(words) - set(available))
    if unknown:
        raise ValueError(f"words {unknown} have no folder under {root}; available: {available}")
    return sorted(set(words))


def load_speech_commands(
    root: str | Path,
    *,
    sample_rate: int = 16000,
    clip_seconds: float | None = 1.0,
    words: Sequence[str] | None = None,
) -> SpeechCommandsSplits:
    """Train / validation / test :class:`AudioSet` s of the official Speech Commands split.

    The full v2 corpus is ~105,000 clips: ~6.7 GB as float32 at 16 kHz, so pass
    ``words`` (or a smaller copy of the tree) on a small machine.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands folder not found: {root}")
    held_out = {split: _read_list(root, name) for split, name in SPLIT_LISTS.items()}
    both = sorted(held_out["validation"] & held_out["test"])
    if both:
        raise ValueError(f"{len(both)} file(s) are in both {SPLIT_LISTS['validation']} and "
                         f"{SPLIT_LISTS['test']} under {root}, e.g. {both[0]}")
    classes = _word_folders(root, words)

    files = [(f"{word}/{path.name}", label) for label, word in enumerate(classes)
             for path in sorted((root / word).glob("*.wav")) if path.is_file()]
    present = {rel for rel, _ in files}
    speaker_names = sorted({s for rel, _ in files if (s := speaker_of(rel.split("/")[1]))})
    speaker_id = {name: i for i, name in enumerate(speaker_names)}
    num_samples = clip_samples(sample_rate, clip_seconds)

    parts: dict[str, tuple[list[np.ndarray], list[int], list[int], list[SkippedFile]]] = {
        split: ([], [], [], []) for split in ("train", "validation", "test")}
    for split, listed in held_out.items():
        for rel in sorted(listed):
            word = rel.split("/")[0]
            if word in classes and rel not in present:
                skip(parts[split][3], root / rel, f"listed in {SPLIT_LISTS[split]} but missing")
    for rel, label in files:
        split = next((s for s, listed in held_out.items() if rel in listed), "train")
        waves, labels, speakers, skipped = parts[split]
        try:
            waves.append(read_clip(root / rel, sample_rate, num_samples))
        except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
            skip(skipped, root / rel, str(err))
            continue
        labels.append(label)
        speaker = speaker_of(rel.split("/")[1])
        speakers.append(speaker_id[speaker] if speaker is not None else -1)
    if not any(parts[s][0] for s in parts):
        total = sum(len(parts[s][3]) for s in parts)
        raise ValueError(f"no readable Speech Commands clips under {root} ({total} unreadable "
                         f"or missing, {len(files)} candidates)")

    def audio_set(split: str) -> AudioSet:
        waves, labels, speakers, skipped = parts[split]
        return AudioSet(waves, np.asarray(labels, np.int64), classes, sample_rate,
                        np.asarray(speakers, np.int64), skipped)

    return SpeechCommandsSplits(audio_set("train"), audio_set("validation"), audio_set("test"),
                                speaker_names)
