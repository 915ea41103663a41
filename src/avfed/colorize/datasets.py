"""Your own clips for colorization: a folder of frame folders (DAVIS layout) or a folder of
video files (Videvo style).

Every clip is resized (short side to ``image_size``, centre-cropped square) and cut into
windows of :data:`~avfed.colorize.color_clips.NUM_FRAMES` consecutive frames; each window
is one example, packed as :mod:`avfed.colorize.color_clips` packs its clips, labelled by
the clip it came from. Whole clips are held out for testing, so no test frame was seen in
training. An unreadable clip is skipped with a warning and counted in the run summary,
never zero-filled.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from avfed.colorize.color_clips import NUM_FRAMES, pack_clips
from avfed.data.types import ImageSet, SkippedFile

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MAX_WINDOWS_PER_CLIP = 32  # a long video contributes evenly spaced windows, not all of them


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(rgb, (max(size, round(w * scale)), max(size, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return resized[top:top + size, left:left + size]


def _windows(frames: np.ndarray, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Non-overlapping windows of ``num_frames``, at most :data:`MAX_WINDOWS_PER_CLIP`
    (evenly spaced), ``[W, T, H, W, 3]``."""
    count = len(frames) // num_frames
    starts = np.arange(count) * num_frames
    if count > MAX_WINDOWS_PER_CLIP:
        starts = starts[np.linspace(0, count - 1, MAX_WINDOWS_PER_CLIP).round().astype(int)]
    return np.stack([frames[s:s + num_frames] for s in starts]) if count else frames[:0][None]


def _kept_frames(total: int | None) -> set[int] | None:
    """Indices of the frames a long video's evenly spaced windows need (``None``: keep
    all), so that only those are kept in memory."""
    if total is None or total // NUM_FRAMES <= MAX_WINDOWS_PER_CLIP:
        return None
    starts = np.linspace(0, total // NUM_FRAMES - 1, MAX_WINDOWS_PER_CLIP).round().astype(int)
    return {int(s) * NUM_FRAMES + k for s in starts for k in range(NUM_FRAMES)}


def _split(windows: list[np.ndarray], names: list[str], skipped: list[SkippedFile],
           test_fraction: float, seed: int, root: Path) -> tuple[ImageSet, ImageSet]:
    if len(windows) < 2:
        raise ValueError(f"{root}: need at least 2 clips with {NUM_FRAMES} or more readable "
                         f"frames, found {len(windows)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(windows))
    n_test = min(len(windows) - 1, max(1, round(test_fraction * len(windows))))
    parts = []
    for ids in (order[n_test:], order[:n_test]):
        clips = np.concatenate([windows[i] for i in ids])
        labels = np.concatenate([np.full(len(windows[i]), i) for i in ids]).astype(np.int64)
        parts.append(ImageSet(pack_clips(clips), labels, names))
    parts[0].skipped = skipped
    return parts[0], parts[1]


def load_frame_folders(root: str | Path, image_size: int, test_fraction: float = 0.2,
                       seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """``root/<clip>/<frame>.jpg|png``, frames in name order (DAVIS' JPEGImages/480p)."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: no such folder: {root}")
    windows, names, skipped = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        try:
            frames = np.stack([_square(np.asarray(Image.open(f).convert("RGB")), image_size)
                               for f in files]) if files else None
        except (OSError, ValueError) as err:
            skipped.append(SkippedFile(folder, f"unreadable frame ({err})"))
            warnings.warn(f"skipping clip {folder}: {err}", RuntimeWarning, stacklevel=2)
            continue
        if frames is None or len(frames) < NUM_FRAMES:
            skipped.append(SkippedFile(folder, f"fewer than {NUM_FRAMES} frames"))
            continue
        windows.append(_windows(frames))
        names.append(folder.name)
    return _split(windows, names, skipped, test_fraction, seed, root)


def load_video_folder(root: str | Path, image_size: int, test_fraction: float = 0.2,
                      seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """``root/<name>.mp4|avi|mov|mkv|webm``: every video one clip (Videvo style)."""
    from avfed.video import VideoReadError, iter_frames, probe_video

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: no such folder: {root}")
    windows, names, skipped = [], [], []
    for path in sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        try:
            keep = _kept_frames(probe_video(path).num_frames)
            frames = np.stack([_square(f.rgb, image_size) for f in iter_frames(path)
                               if keep is None or f.index in keep])
        except (VideoReadError, ValueError) as err:
            skipped.append(SkippedFile(path, str(err)))
            warnings.warn(f"skipping video {path}: {err}", RuntimeWarning, stacklevel=2)
            continue
        if len(frames) < NUM_FRAMES:
            skipped.append(SkippedFile(path, f"fewer than {NUM_FRAMES} frames"))
            continue
        windows.append(_windows(frames))
        names.append(path.stem)
    return _split(windows, names, skipped, test_fraction, seed, root)
