"""Loaders for users' own data in the ImageFolder layout: ``root/<class>/<file>``.

Unreadable files are skipped with a warning that names them and are listed in the
returned set's ``skipped`` (the run summary counts them); a file is never replaced by
a zero tensor, which would silently teach the model that blank inputs are a class.

Truncated files count as unreadable too. Decoders are lenient about them: libjpeg
fills the missing part of a cut-off JPEG with grey and only prints a warning, and
libsndfile returns the frames a cut-off WAV still holds. So before decoding, a JPEG
must reach its end-of-image marker and a PNG its ``IEND`` chunk (bytes after those are
allowed); a RIFF/WAVE file must hold the whole ``data`` chunk its header declares
(unless the size is the streaming placeholder 0 or 0xFFFFFFFF), and any audio file
must yield as many frames as its header declares. Other formats are rejected only when
their decoder fails (OpenCV's BMP, TIFF and WebP readers and libsndfile's FLAC and Ogg
readers refuse cut-off files).
"""

from __future__ import annotations

import struct
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


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's marker structure runs from SOI to the EOI marker.

    Walks the header segments by their lengths and, after each SOS, the entropy-coded
    data to its next marker (``FF00`` stuffing and ``FFD0``–``FFD7`` restarts are part
    of the data), so an EOI inside an embedded thumbnail or a table does not count.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    pos, size = 2, len(data)
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg, too, skips stray bytes before a marker
        if pos < 0:
            return False
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            return False
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return True
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            continue
        if pos + 2 > size:
            return False
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2 or pos + length > size:
            return False
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next real marker
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= size:
                    return False
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    pos += 2
                    continue
                break


def _png_complete(data: bytes) -> bool:
    """Whether a PNG's chunks run, each whole, up to and including ``IEND``."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    pos, size = 8, len(data)
    while pos + 8 <= size:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        pos += 8 + length + 4  # type and length, data, CRC
        if pos > size:
            return False
        if kind == b"IEND":
            return True
    return False


def check_complete_image(data: bytes) -> None:
    """Raise ``ValueError`` when JPEG or PNG bytes are cut off (other formats pass)."""
    if data.startswith(b"\xff\xd8") and not _jpeg_complete(data):
        raise ValueError("truncated JPEG (no end-of-image marker)")
    if data.startswith(b"\x89PNG") and not _png_complete(data):
        raise ValueError("truncated PNG (no complete IEND chunk)")


_WAV_SIZE_UNKNOWN = (0, 0xFFFFFFFF)  # what streaming writers leave in the size fields


def check_complete_wav(path: Path) -> None:
    """Raise ``ValueError`` when a RIFF/WAVE file holds less than its ``data`` chunk declares.

    Non-RIFF files (FLAC, Ogg, RF64, …) are left to their decoder.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            kind, length = struct.unpack("<4sI", fh.read(8))
            if kind == b"data":
                held = size - pos - 8
                if length not in _WAV_SIZE_UNKNOWN and held < length:
                    raise ValueError(f"truncated WAV: data chunk declares {length} bytes, "
                                     f"file holds {held}")
                return
            pos += 8 + length + (length & 1)  # chunks are padded to even sizes


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
        data = path.read_bytes()
        check_complete_image(data)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
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
        check_complete_wav(path)
        with sf.SoundFile(str(path)) as fh:
            declared, rate = fh.frames, fh.samplerate
            audio = fh.read(dtype="float32", always_2d=True)
        if audio.shape[0] < declared:
            raise ValueError(f"truncated: header declares {declared} frames, "
                             f"decoded {audio.shape[0]}")
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
