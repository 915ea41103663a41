"""Video datasets on disk: UCF-101 and HMDB-51 with their official splits, and a
Kinetics-style ``root/<class>/<video>`` folder.

Every video is decoded once, through :mod:`avfed.video` (PyAV: any container and codec
FFmpeg reads), into ``data.video.num_frames`` frames ``frame_stride`` apart taken from
the middle of the file, each resized so its shorter side is ``data.image_size`` and
centre-cropped square, and kept in memory as uint8 (a :class:`VideoSet`). Training and
evaluation then cut their clips out of these frames without touching the disk again.
(UCF-101 split 1 at 16 × 112 × 112 is about 9,500 × 600 kB ≈ 5.7 GB of training clips.)

A file that cannot be used — unreadable, truncated, with no frames, with frames that
change size, or too short for the frames asked for — is skipped with a warning naming it
and counted in the run summary (``skipped_files``), never replaced by zeros. So is a
line of a split file naming a video that is not there. A missing split file is a warning
too, and the split falls back to a stratified one (``data.test_fraction``). A dataset
left with no usable video, or with a single class, is an error before training starts.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch

from avfed.config import ConfigError
from avfed.data.types import SkippedFile, VideoSet
from avfed.video import VideoReadError, probe_video, read_frames

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


class VideoTooShort(VideoReadError):
    """Fewer frames than a stored video needs."""


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (area interpolation when shrinking), then centre crop."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


def decode_video(path: Path, num_frames: int, stride: int, size: int) -> np.ndarray:
    """``[3, num_frames, size, size]`` uint8: frames ``stride`` apart from the middle.

    Seeks to the middle instead of decoding from the start when the header says how long
    the file is. Raises :class:`VideoReadError` for anything unusable.
    """
    span = (num_frames - 1) * stride + 1
    info = probe_video(path)
    total = info.num_frames or (round(info.duration_s * info.fps)
                                if info.duration_s and info.fps else None)
    start_s = 0.0
    if total and info.fps and total > span:
        start_s = ((total - span) // 2) / info.fps
    frames, _ = read_frames(path, start_s=start_s, num_frames=span)
    if len(frames) < span and start_s > 0:  # the header overstated the length: retry
        frames, _ = read_frames(path, num_frames=span)
    if len(frames) < span:
        raise VideoTooShort(path, f"has {len(frames)} frames; {num_frames} frames "
                                  f"{stride} apart need {span}")
    picked = frames[::stride][:num_frames]
    return np.stack([square_resize(f, size) for f in picked]).transpose(3, 0, 1, 2)


def decode_all(items: Iterable[tuple[Path, int]], num_frames: int, stride: int, size: int,
               skipped: list[SkippedFile]) -> tuple[list[np.ndarray], list[int], list[Path]]:
    """Decode each (path, label); unusable files go to ``skipped`` with a warning."""
    videos, labels, kept = [], [], []
    for path, label in items:
        try:
            videos.append(decode_video(path, num_frames, stride, size))
        except VideoReadError as err:  # its message already names the file
            skip(skipped, path, err.reason)
            continue
        except OSError as err:
            skip(skipped, path, str(err))
            continue
        labels.append(label)
        kept.append(path)
    return videos, labels, kept


def skip(skipped: list[SkippedFile], path: Path, reason: str) -> None:
    warnings.warn(f"skipping {path}: {reason}", RuntimeWarning, stacklevel=3)
    skipped.append(SkippedFile(Path(path), reason))


def to_video_set(videos: list[np.ndarray], labels: list[int], classes: list[str],
                 skipped: list[SkippedFile], groups: list[int] | None = None) -> VideoSet:
    data = torch.from_numpy(np.stack(videos)) if videos else torch.zeros(0, 3, 1, 1, 1,
                                                                          dtype=torch.uint8)
    return VideoSet(data, np.asarray(labels, np.int64), classes, skipped=skipped,
                    groups=None if groups is None else np.asarray(groups, np.int64))


def check_usable(name: str, root: Path, train: VideoSet, test: VideoSet) -> None:
    """An unusable dataset is a start-up error naming the folder, not a failed round."""
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(
            f"data.root={root}: {name} left {len(train)} training and {len(test)} test "
            f"videos that decode ({len(train.skipped)} files skipped; see the warnings); "
            "check the folder layout and the files")
    if len(np.unique(train.labels)) < 2:
        raise ConfigError(f"data.root={root}: {name} has a single class among the videos "
                          "that decode; evaluation needs at least 2")


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# -- Kinetics-style folders -------------------------------------------------------------------

def load_video_folder(root: str | Path, num_frames: int, stride: int, size: int
                      ) -> tuple[VideoSet, VideoSet | None]:
    """``root/<class>/<video>`` (or ``root/train/<class>/…`` with ``root/val`` or
    ``root/test`` beside it, Kinetics' own split): ``(all, None)`` or ``(train, test)``."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such folder")
    held_out = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        classes = sorted({p.name for p in _class_folders(root / "train")}
                         | {p.name for p in _class_folders(held_out)})
        return (_load_classes(root / "train", classes, num_frames, stride, size),
                _load_classes(held_out, classes, num_frames, stride, size))
    classes = [p.name for p in _class_folders(root)]
    return _load_classes(root, classes, num_frames, stride, size), None


def _load_classes(folder: Path, classes: list[str], num_frames: int, stride: int, size: int
                  ) -> VideoSet:
    skipped: list[SkippedFile] = []
    items = [(path, i) for i, name in enumerate(classes) if (folder / name).is_dir()
             for path in _videos_in(folder / name)]
    videos, labels, _ = decode_all(items, num_frames, stride, size, skipped)
    return to_video_set(videos, labels, classes, skipped)


# -- UCF-101 ----------------------------------------------------------------------------------

_UCF_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    return next((root / n for n in names if (root / n).is_dir()), root)


def _split_file(root: Path, folders: tuple[str, ...], name: str) -> Path | None:
    for folder in ("", *folders):
        candidate = root / folder / name if folder else root / name
        if candidate.is_file():
            return candidate
    return None


def load_ucf101(root: str | Path, split: int, num_frames: int, stride: int, size: int
                ) -> tuple[VideoSet, VideoSet | None]:
    """UCF-101 as distributed: ``root/UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` (or the
    class folders directly in ``root``) and ``root/ucfTrainTestlist/{classInd,
    trainlist0N,testlist0N}.txt``. ``groups`` holds the recording group (gGG), which
    the official splits keep apart. ``(all, None)`` when a split file is missing."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such folder")
    video_root = _first_dir(root, ("UCF-101", "UCF101", "videos"))
    lists = ("ucfTrainTestlist", "splits")
    skipped: list[SkippedFile] = []
    classes = [p.name for p in _class_folders(video_root) if _videos_in(p)]
    class_ind = _split_file(root, lists, "classInd.txt")
    if class_ind is not None:
        classes = [line.split()[1] for line in class_ind.read_text().splitlines()
                   if len(line.split()) >= 2]
    index = {name.lower(): i for i, name in enumerate(classes)}
    split_paths = [_split_file(root, lists, f"{kind}list0{split}.txt")
                   for kind in ("train", "test")]
    if any(p is None for p in split_paths):
        kind = "train" if split_paths[0] is None else "test"
        missing = root / lists[0] / f"{kind}list0{split}.txt"
        skip(skipped, missing, "official split file missing; using a stratified split "
                               "(data.test_fraction) instead")
        items = [(path, index[cls.name.lower()]) for cls in _class_folders(video_root)
                 if cls.name.lower() in index for path in _videos_in(cls)]
        return _ucf_set(items, classes, num_frames, stride, size, skipped), None
    sets = []
    for split_path in split_paths:
        assert split_path is not None
        items = []
        for line in split_path.read_text().splitlines():
            if not line.strip():
                continue
            rel = line.split()[0].replace("\\", "/")
            path = video_root / rel
            label = index.get(rel.split("/")[0].lower())
            if label is None or not path.is_file():
                why = "unknown class" if label is None else "listed but not found"
                skip(skipped, path, f"{why} (in {split_path.name})")
                continue
            items.append((path, label))
        sets.append(_ucf_set(items, classes, num_frames, stride, size, skipped))
        skipped = []  # each set counts its own files
    return sets[0], sets[1]


def _ucf_set(items: list[tuple[Path, int]], classes: list[str], num_frames: int, stride: int,
             size: int, skipped: list[SkippedFile]) -> VideoSet:
    videos, labels, kept = decode_all(items, num_frames, stride, size, skipped)
    groups = [int(m.group(1)) if (m := _UCF_GROUP.search(p.name)) else -1 for p in kept]
    return to_video_set(videos, labels, classes, skipped, groups)


# -- HMDB-51 ----------------------------------------------------------------------------------

def load_hmdb51(root: str | Path, split: int, num_frames: int, stride: int, size: int
                ) -> tuple[VideoSet, VideoSet | None]:
    """HMDB-51 as distributed: ``root/<class>/<video>.avi`` (or under ``root/hmdb51``)
    and ``root/testTrainMulti_7030_splits/<class>_test_splitN.txt``, whose lines are
    ``<video> 1`` (train), ``2`` (test) or ``0`` (unused). ``(all, None)`` when the
    split files are missing."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: no such folder")
    video_root = _first_dir(root, ("hmdb51", "hmdb51_org", "videos"))
    split_dirs = [d for d in (root / "testTrainMulti_7030_splits", root / "splits", root)
                  if d.is_dir()]
    classes = [p.name for p in _class_folders(video_root) if _videos_in(p)]
    train_skipped: list[SkippedFile] = []
    test_skipped: list[SkippedFile] = []
    train_items: list[tuple[Path, int]] = []
    test_items: list[tuple[Path, int]] = []
    missing: list[Path] = []
    for label, name in enumerate(classes):
        split_file = next((d / f"{name}_test_split{split}.txt" for d in split_dirs
                           if (d / f"{name}_test_split{split}.txt").is_file()), None)
        if split_file is None:
            missing.append(root / "testTrainMulti_7030_splits" / f"{name}_test_split{split}.txt")
            continue
        for line in split_file.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[1] not in ("1", "2"):
                continue
            path = video_root / name / parts[0]
            target, bad = ((train_items, train_skipped) if parts[1] == "1"
                           else (test_items, test_skipped))
            if not path.is_file():
                skip(bad, path, f"listed but not found (in {split_file.name})")
                continue
            target.append((path, label))
    if missing:
        for path in missing:
            skip(train_skipped, path, "official split file missing; using a stratified split "
                                      "(data.test_fraction) instead")
        items = [(path, label) for label, name in enumerate(classes)
                 for path in _videos_in(video_root / name)]
        videos, labels, _ = decode_all(items, num_frames, stride, size, train_skipped)
        return to_video_set(videos, labels, classes, train_skipped), None
    train = to_video_set(*decode_all(train_items, num_frames, stride, size, train_skipped)[:2],
                         classes, train_skipped)
    test = to_video_set(*decode_all(test_items, num_frames, stride, size, test_skipped)[:2],
                        classes, test_skipped)
    return train, test


# -- what the catalog calls --------------------------------------------------------------------

def finish_split(name: str, root: str | Path, loaded: tuple[VideoSet, VideoSet | None],
                 stratify: Callable[[VideoSet], tuple[VideoSet, VideoSet]]
                 ) -> tuple[VideoSet, VideoSet]:
    """The (train, test) pair: the official one, or ``stratify(all)`` (the catalog's
    per-class split) when there is none; every skipped file is listed on the training
    set (the run summary counts those); an unusable result is a :class:`ConfigError`."""
    train, test = loaded
    if test is None:
        if len(train) == 0:
            check_usable(name, Path(root), train, train)  # raises: nothing decodes
        train, test = stratify(train)
    else:
        train.skipped = [*train.skipped, *test.skipped]
    check_usable(name, Path(root), train, test)
    return train, test
