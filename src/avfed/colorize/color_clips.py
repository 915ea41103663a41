"""``color_clips``: built-in colour video clips for training and scoring colorization.

Each clip is a short camera move over one of scikit-image's bundled colour photographs —
a **pan**, a **zoom**, a **rotation**, or **parallax** (a cut-out of the photo sliding
over the rest faster than the background, so that parts of the scene are occluded and
revealed) — or a **digit** (one of scikit-learn's handwritten digit scans, in a random
colour, moving over a photo). Colorization needs real colour statistics (skin, sky,
foliage, fur) and temporal consistency needs real motion with occlusions; these clips
have both at a size a CPU trains on, with nothing downloaded.

The test split is held out by content: its clips come from photographs and digit scans
no training clip uses, so a score on it is a score on unseen pictures. Every clip is
drawn from the seed alone.

In avfed's data model a clip is one example of an image source whose ``T`` frames are
stacked along the channels: ``[N, T·3, H, W]`` uint8 (:func:`unpack_clips` turns a batch
back into ``[B, T, 3, H, W]`` floats). Labels are the clip kinds (:data:`KINDS`), which
partitioners can skew across clients.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from avfed.data.types import ImageSet

KINDS = ("pan", "zoom", "rotation", "parallax", "digit")
# bundled with scikit-image, no download; the test photographs are never trained on
TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")
TEST_PHOTOS = ("chelsea", "coffee")
PHOTO_SIDE = 320  # photos are stored at most this big: crops are then a few times a frame
NUM_FRAMES = 6
TRAIN_CLIPS, TEST_CLIPS = 200, 40


@lru_cache(maxsize=2)
def _photos(names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    import cv2
    import skimage.data

    photos = []
    for name in names:
        img = np.asarray(getattr(skimage.data, name)())[..., :3]
        scale = PHOTO_SIDE / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
        photos.append(np.ascontiguousarray(img))
    return tuple(photos)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    import cv2
    from sklearn.datasets import load_digits

    bunch = load_digits()
    scans = (bunch.images / 16.0).astype(np.float32)
    return np.stack([cv2.resize(s, (24, 24), interpolation=cv2.INTER_CUBIC)
                     for s in scans]).clip(0, 1), bunch.target


def _view(photo: np.ndarray, cx: float, cy: float, side: float, angle: float, size: int
          ) -> np.ndarray:
    """A ``size²`` view of ``photo``: a square of ``side`` photo pixels centred on
    (cx, cy), rotated by ``angle`` degrees (reflected at the photo's edges)."""
    import cv2

    scale = size / side
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
    return cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def _camera(kind: str, photo: np.ndarray, size: int, frames: int, rng: np.random.Generator
            ) -> np.ndarray:
    h, w = photo.shape[:2]
    side0 = rng.uniform(0.35, 0.6) * min(h, w)
    cx0, cy0 = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    u = np.arange(frames) / max(frames - 1, 1)
    angle0 = rng.uniform(-15, 15)
    direction = rng.uniform(0, 2 * np.pi)
    travel = rng.uniform(0.15, 0.35) * side0  # the whole clip's pan, in photo pixels
    dx, dy = np.cos(direction) * travel, np.sin(direction) * travel
    out = []
    for t in u:
        cx, cy, side, angle = cx0, cy0, side0, angle0
        if kind in ("pan", "parallax"):
            cx, cy = cx0 + dx * (t - 0.5), cy0 + dy * (t - 0.5)
        elif kind == "zoom":
            side = side0 * np.exp(np.log(1.6) * (t - 0.5) * (1 if direction > np.pi else -1))
        elif kind == "rotation":
            angle = angle0 + 30.0 * (t - 0.5) * (1 if direction > np.pi else -1)
        out.append(_view(photo, cx, cy, side, angle, size))
    clip = np.stack(out)
    if kind == "parallax":  # a disc of another part of the photo moving 3× faster
        fx, fy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        radius = rng.uniform(0.2, 0.3) * size
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        for i, t in enumerate(u):
            shift = 3.0 * (t - 0.5) * size * travel / side0
            px = size / 2 + np.cos(direction) * shift
            py = size / 2 + np.sin(direction) * shift
            layer = _view(photo, fx - (px - size / 2) * side0 / size,
                          fy - (py - size / 2) * side0 / size, side0, angle0, size)
            alpha = np.clip(radius - np.hypot(xx - px, yy - py), 0, 1)[..., None]
            clip[i] = np.rint(clip[i] * (1 - alpha) + layer * alpha).astype(np.uint8)
    return clip


def _digit_clip(photo: np.ndarray, sprite: np.ndarray, size: int, frames: int,
                rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = photo.shape[:2]
    side = rng.uniform(0.4, 0.8) * min(h, w)
    background = _view(photo, rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, side, 0.0,
                       size).astype(np.float32) * 0.7
    color = rng.uniform(0.2, 1.0, 3)
    color[int(rng.integers(3))] = 1.0
    start, end = rng.uniform(0.25, 0.75, 2) * size, rng.uniform(0.25, 0.75, 2) * size
    spin = rng.uniform(-40, 40)
    scale = rng.uniform(0.4, 0.6) * size / sprite.shape[0]
    out = []
    for t in np.arange(frames) / max(frames - 1, 1):
        x, y = start + (end - start) * t
        m = cv2.getRotationMatrix2D((sprite.shape[1] / 2, sprite.shape[0] / 2), spin * t, scale)
        m[:, 2] += np.array([x - sprite.shape[1] / 2, y - sprite.shape[0] / 2])
        alpha = cv2.warpAffine(sprite, m, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        frame = background * (1 - alpha) + color * 255.0 * alpha
        out.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return np.stack(out)


def generate_color_clips(num_clips: int, size: int = 64, num_frames: int = NUM_FRAMES,
                         seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``num_clips`` clips ``[N, T, size, size, 3]`` uint8 (kinds in turn) and their kind
    labels, over the ``split``'s photographs and digit scans (even scans train, odd test)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    if num_clips < 1 or size < 8 or num_frames < 2:
        raise ValueError("color_clips needs num_clips >= 1, size >= 8 and num_frames >= 2; "
                         f"got {num_clips}, {size}, {num_frames}")
    photos = _photos(TRAIN_PHOTOS if split == "train" else TEST_PHOTOS)
    sprites, _ = _digits()
    scans = np.arange(0 if split == "train" else 1, len(sprites), 2)
    rng = np.random.default_rng([seed, 0xC0107, 0 if split == "train" else 1])
    clips = np.empty((num_clips, num_frames, size, size, 3), np.uint8)
    labels = np.arange(num_clips) % len(KINDS)
    for i, label in enumerate(labels):
        photo = photos[int(rng.integers(len(photos)))]
        if KINDS[label] == "digit":
            sprite = sprites[scans[int(rng.integers(len(scans)))]]
            clips[i] = _digit_clip(photo, sprite, size, num_frames, rng)
        else:
            clips[i] = _camera(KINDS[label], photo, size, num_frames, rng)
    return clips, labels.astype(np.int64)


def pack_clips(clips: np.ndarray) -> torch.Tensor:
    """``[N, T, H, W, 3]`` uint8 → ``[N, T·3, H, W]`` (frames stacked along channels)."""
    n, t, h, w, c = clips.shape
    return torch.from_numpy(np.ascontiguousarray(clips.transpose(0, 1, 4, 2, 3))).reshape(
        n, t * c, h, w)


def unpack_clips(packed: torch.Tensor) -> torch.Tensor:
    """``[B, T·3, H, W]`` (uint8 or float) → ``[B, T, 3, H, W]`` float in [0, 1]."""
    b, tc, h, w = packed.shape
    if tc % 3:
        raise ValueError(f"packed clips need a multiple of 3 channels, got {tc}")
    clips = packed.reshape(b, tc // 3, 3, h, w)
    return clips.float() / 255.0 if packed.dtype == torch.uint8 else clips.float()


@lru_cache(maxsize=2)
def load_color_clips(size: int = 64, seed: int = 0, train_clips: int = TRAIN_CLIPS,
                     test_clips: int = TEST_CLIPS, num_frames: int = NUM_FRAMES
                     ) -> tuple[ImageSet, ImageSet]:
    """The (train, test) split as packed clips (see the module docstring); kept for the
    process (a simulation process builds the run once per client), so treat as read-only."""
    split = []
    for name, count in (("train", train_clips), ("test", test_clips)):
        clips, labels = generate_color_clips(count, size, num_frames, seed, name)
        split.append(ImageSet(pack_clips(clips), labels, list(KINDS)))
    return split[0], split[1]


def load_color_frames(size: int = 64, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Every frame of :func:`load_color_clips` as a ``[N, 3, H, W]`` colour image in [0, 1]
    (labelled by its clip's kind): data for pre-training a feature extractor with SSL on
    the same pictures (``init=`` of the colorization task)."""
    out = []
    for clips in load_color_clips(size, seed):
        frames = unpack_clips(clips.images)
        t = frames.shape[1]
        out.append(ImageSet(frames.flatten(0, 1), np.repeat(clips.labels, t), list(KINDS)))
    return out[0], out[1]
