"""Loaders for users' own data in the ImageFolder layout: ``root/<class>/<file>``.

Unreadable files are skipped with a warning that names them and are listed in the
returned set's ``skipped`` (the run summary counts them); a file is never replaced by
a zero tensor, which would silently teach the model that blank inputs are a class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from math import gcd
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from avfed.data.types import AudioSet, ImageSet, SkippedFile

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")

T = TypeVar("T")


def _class_files(
    root: str | Path, extensions: Iterable[str]
) -> tuple[list[str], list[tuple[Path, int]]]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class subfolders; expected {root}/<class>/<file>")
    exts = tuple(e.lower() for e in extensions)
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.is_file() and path.suffix.lower() in exts
    ]
    return classes, files


def _read_all(
    files: list[tuple[Path, int]], read: Callable[[Path], T], root: str | Path, kind: str
) -> tuple[list[T], list[int], list[SkippedFile]]:
    items: list[T] = []
    labels: list[int] = []
    skipped: list[SkippedFile] = []
    for path, label in files:
        try:
            items.append(read(path))
            labels.append(label)
        except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
            skipped.append(SkippedFile(path, str(err)))
            warnings.warn(f"skipping unreadable {kind} {path}: {err}", stacklevel=3)
    if not items:
        raise ValueError(f"no readable {kind} files under {root} "
                         f"({len(skipped)} unreadable, {len(files)} candidates)")
    return items, labels, skipped


def load_image_folder(
    root: str | Path,
    *,
    image_size: int = 32,
    channels: int = 3,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> ImageSet:
    """Images resized to ``image_size``², as float ``[N, channels, H, W]`` in ``[0, 1]``."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    classes, files = _class_files(root, extensions)

    def read(path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise ValueError("not a decodable image")
        scale = 65535.0 if img.dtype == np.uint16 else 255.0
        img = img.astype(np.float32) / scale
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]  # drop alpha
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if channels == 1 and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if channels == 3 and img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[:, :, None]
        return np.clip(img, 0.0, 1.0).transpose(2, 0, 1)

    images, labels, skipped = _read_all(files, read, root, "image")
    return ImageSet(torch.from_numpy(np.stack(images)), np.asarray(labels, np.int64), classes,
                    skipped)


def load_audio_folder(
    root: str | Path,
    *,
    sample_rate: int | None = None,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
) -> AudioSet:
    """Mono float32 waveforms, resampled to ``sample_rate`` (default: the first file's)."""
    classes, files = _class_files(root, extensions)
    target = [sample_rate]

    def read(path: Path) -> np.ndarray:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        if audio.shape[0] == 0:
            raise ValueError("file holds no samples")
        if not np.isfinite(audio).all():
            raise ValueError("file holds NaN or Inf samples")
        mono = audio.mean(axis=1)
        if target[0] is None:
            target[0] = rate
        if rate != target[0]:
            g = gcd(int(target[0]), int(rate))
            mono = resample_poly(mono, target[0] // g, rate // g).astype(np.float32)
        return mono

    waves, labels, skipped = _read_all(files, read, root, "audio")
    assert target[0] is not None
    return AudioSet(waves, np.asarray(labels, np.int64), classes, int(target[0]), None, skipped)
