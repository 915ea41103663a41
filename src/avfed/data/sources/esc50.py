"""ESC-50 (Piczak, 2015) in its published layout: ``audio/*.wav`` + ``meta/esc50.csv``.

2,000 five-second environmental recordings, 50 classes, in 5 official folds that keep
clips cut from the same source recording together; results are reported with one fold
held out. The CSV's ``target`` gives the class and ``category`` its name; ``src_file``
(the source recording) becomes the set's ``speakers`` grouping, so partitioners can
keep a recording's clips on one client.

Also here: :func:`read_clip`, the mono/resample/fixed-length reader that the
standard-layout loaders share. Long clips are centre-cropped and short ones padded
with zeros split evenly at both ends: silence around a short sound is how fixed-length
corpora are built, unlike a corrupt file, which is skipped with a warning naming it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from avfed.data.sources.audio_io import clip_samples, read_clip, skip
from avfed.data.types import AudioSet, SkippedFile

ESC50_FOLDS = (1, 2, 3, 4, 5)
ESC50_CLIP_SECONDS = 5.0
REQUIRED_COLUMNS = ("filename", "fold", "target", "category")


def _read_metadata(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise FileNotFoundError(f"ESC-50 metadata not found: expected {csv_path} "
                                "(the dataset root must hold meta/esc50.csv and audio/)")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks column(s) {missing}; expected at least "
                             f"{list(REQUIRED_COLUMNS)}")
        return list(reader)


def _parse_int(row: dict[str, str], column: str, csv_path: Path, line: int) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"{csv_path} line {line}: {column} must be an integer, "
                         f"got {row[column]!r}") from None


def read_esc50(
    root: str | Path,
    *,
    sample_rate: int = 16000,
    clip_seconds: float | None = ESC50_CLIP_SECONDS,
    esc10: bool = False,
) -> tuple[AudioSet, np.ndarray]:
    """Every readable clip as one :class:`AudioSet`, plus each clip's official fold.

    Labels are the rank of ``target`` among the targets present, so the full corpus
    keeps ESC-50's numbering and the ESC-10 subset (``esc10=True``) is numbered 0–9.
    The default 16 kHz keeps the 2,000 clips at ~0.6 GB instead of ~1.8 GB at 44.1 kHz.
    """
    root = Path(root)
    csv_path = root / "meta" / "esc50.csv"
    audio_dir = root / "audio"
    rows = _read_metadata(csv_path)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"ESC-50 audio folder not found: expected {audio_dir}")
    if esc10:
        if rows and "esc10" not in rows[0]:
            raise ValueError(f"{csv_path} has no esc10 column, so esc10=True cannot select")
        rows = [r for r in rows if r["esc10"].strip().lower() == "true"]
    if not rows:
        raise ValueError(f"{csv_path} lists no clips" + (" in ESC-10" if esc10 else ""))

    names: dict[int, str] = {}
    parsed = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        fold = _parse_int(row, "fold", csv_path, line)
        if fold not in ESC50_FOLDS:
            raise ValueError(f"{csv_path} line {line}: fold must be one of {ESC50_FOLDS}, "
                             f"got {fold}")
        target = _parse_int(row, "target", csv_path, line)
        if names.setdefault(target, row["category"]) != row["category"]:
            raise ValueError(f"{csv_path} line {line}: target {target} is named both "
                             f"'{names[target]}' and '{row['category']}'")
        source = row.get("src_file", "")
        parsed.append((row["filename"], fold, target, int(source) if source.isdigit() else -1))
    targets = sorted(names)
    label_of = {t: i for i, t in enumerate(targets)}

    num_samples = clip_samples(sample_rate, clip_seconds)
    waves: list[np.ndarray] = []
    labels, folds, sources = [], [], []
    skipped: list[SkippedFile] = []
    for filename, fold, target, source in parsed:
        path = audio_dir / filename
        if not path.is_file():
            skip(skipped, path, "listed in meta/esc50.csv but missing")
            continue
        try:
            waves.append(read_clip(path, sample_rate, num_samples))
        except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
            skip(skipped, path, str(err))
            continue
        labels.append(label_of[target])
        folds.append(fold)
        sources.append(source)
    if not waves:
        raise ValueError(f"no readable ESC-50 clips under {audio_dir} "
                         f"({len(skipped)} unreadable or missing)")
    data = AudioSet(waves, np.asarray(labels, np.int64), [names[t] for t in targets],
                    sample_rate, np.asarray(sources, np.int64), skipped)
    return data, np.asarray(folds, np.int64)


def load_esc50(
    root: str | Path,
    *,
    test_fold: int = 5,
    sample_rate: int = 16000,
    clip_seconds: float | None = ESC50_CLIP_SECONDS,
    esc10: bool = False,
) -> tuple[AudioSet, AudioSet]:
    """(train, test) with official fold ``test_fold`` held out; skipped files ride on train."""
    if test_fold not in ESC50_FOLDS:
        raise ValueError(f"test_fold must be one of {ESC50_FOLDS}, got {test_fold}")
    data, folds = read_esc50(root, sample_rate=sample_rate, clip_seconds=clip_seconds,
                             esc10=esc10)
    is_test = folds == test_fold
    if not is_test.any() or is_test.all():
        side = "in" if not is_test.any() else "outside"
        raise ValueError(f"ESC-50 under {root} has no readable clip {side} fold {test_fold}")
    train, test = data.subset(np.flatnonzero(~is_test)), data.subset(np.flatnonzero(is_test))
    train.skipped = list(data.skipped)
    return train, test
