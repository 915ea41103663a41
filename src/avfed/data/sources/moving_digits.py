"""The built-in ``moving_digits`` action clips: a real handwritten digit moving over a photo.

Action recognition needs *temporal* understanding: in UCF-101 a frame of "jumping jack"
and one of "jump rope" can look alike, and only the motion tells them apart. These clips
keep that property at a size a CPU trains on in minutes. The actor is one of
scikit-learn's 1,797 real digit scans, drawn in a random colour over a random crop of
one of scikit-image's bundled photographs, and the **class is the motion** (left to
right, right to left, up, down, diagonal, circle, zoom in, zoom out, rotate clockwise,
rotate anticlockwise), never the digit or the background: appearance is a nuisance, and
a single frame cannot tell "left to right" from "right to left", nor "zoom in" from
"zoom out".

Every clip is drawn from the seed alone (digit, photo, crop, colour, path nuisances:
speed, extent, start position), so the same seed always gives the same clips, and the
corpus is cached as one ``.npz`` in a folder named by a hash of its settings.

:func:`render_along_path` draws any sprite along any :class:`MotionPath` on any
background; other generators (colourisation, tracking) reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from avfed.data.types import VideoSet

MOTIONS = ("left_to_right", "right_to_left", "up", "down", "diagonal", "circle", "zoom_in",
           "zoom_out", "rotate_cw", "rotate_ccw")
CORPUS_VERSION = 1  # bump when generation changes, so stale caches are not reused
# bundled with scikit-image (no download): textured, varied backgrounds
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "grass", "gravel",
          "brick", "moon")
SPRITE_SIDE = 24  # the 8×8 scan is upsampled once to this before warping (smooth edges)
BACKGROUND_DIM = 0.6  # photos are dimmed so the bright actor stays visible


@dataclass(frozen=True)
class MotionPath:
    """Where the actor is in each frame, in normalised frame coordinates.

    ``x``, ``y`` are the sprite centre in ``[-1, 1]`` (x to the right, y downwards, as
    image rows run); ``scale`` is its half-side as a fraction of the half-frame; ``angle``
    its rotation in radians, positive = clockwise on screen.
    """

    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def motion_path(motion: str, num_frames: int, rng: np.random.Generator) -> MotionPath:
    """A path of ``motion`` over ``num_frames`` frames, with random nuisances (extent,
    speed, start position, size, initial tilt) drawn from ``rng``."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion '{motion}'; valid: {', '.join(MOTIONS)}")
    if num_frames < 2:
        raise ValueError(f"a motion needs at least 2 frames, got {num_frames}")
    u = np.linspace(0.0, 1.0, num_frames)
    ones = np.ones(num_frames)
    size = rng.uniform(0.28, 0.38)
    tilt = rng.uniform(-0.3, 0.3)
    extent = rng.uniform(0.9, 1.3)  # total travel of the translations (frame = 2 units)
    mid, across = rng.uniform(-0.15, 0.15), rng.uniform(-0.4, 0.4)
    x, y, scale, angle = mid * ones, across * ones, size * ones, tilt * ones
    travel = extent * (u - 0.5)
    if motion == "left_to_right":
        x, y = mid + travel, across * ones
    elif motion == "right_to_left":
        x, y = mid - travel, across * ones
    elif motion == "up":
        x, y = across * ones, mid - travel
    elif motion == "down":
        x, y = across * ones, mid + travel
    elif motion == "diagonal":  # bottom-left to top-right
        x, y = mid + travel / np.sqrt(2), -mid - travel / np.sqrt(2)
        x, y = x + across / 3, y + across / 3
    elif motion == "circle":  # one clockwise turn on screen
        radius, phase = rng.uniform(0.35, 0.5), rng.uniform(0, 2 * np.pi)
        theta = phase + 2 * np.pi * u * (num_frames - 1) / num_frames
        x, y = mid + radius * np.cos(theta), mid / 2 + radius * np.sin(theta)
    elif motion in ("zoom_in", "zoom_out"):
        grow = size * np.exp(np.log(rng.uniform(2.2, 3.0)) * (u - 0.5))
        scale = grow if motion == "zoom_in" else grow[::-1].copy()
        x, y = mid * ones, across / 2 * ones
    else:  # rotations: about half a turn over the clip
        sweep = np.pi * rng.uniform(0.8, 1.2)
        sign = 1.0 if motion == "rotate_cw" else -1.0
        angle = tilt + sign * sweep * u
        x, y = mid * ones, across / 2 * ones
    return MotionPath(np.asarray(x, float), np.asarray(y, float), np.asarray(scale, float),
                      np.asarray(angle, float))


def render_along_path(sprite: np.ndarray, background: np.ndarray, path: MotionPath,
                      size: int, color: tuple[float, float, float] = (1.0, 1.0, 1.0)
                      ) -> np.ndarray:
    """Frames ``[T, size, size, 3]`` uint8 of ``sprite`` moving along ``path``.

    ``sprite`` is ``[h, w]`` coverage in ``[0, 1]`` (it is the alpha of the actor, drawn
    in ``color``); ``background`` is ``[size, size, 3]`` floats in ``[0, 1]``, the same in
    every frame (a static camera). Each frame is one bilinear warp of the sprite.
    """
    if background.shape != (size, size, 3):
        raise ValueError(f"background must be [{size}, {size}, 3], got {background.shape}")
    cos, sin = np.cos(path.angle), np.sin(path.angle)
    inv = 1.0 / path.scale
    # pixel centres in normalised coordinates (align_corners=False), then
    # output coords p → sprite coords q = R(−angle)(p − centre) / scale
    axis = (np.arange(size) + 0.5) * 2 / size - 1
    dx = axis[None, None, :] - path.x[:, None, None]
    dy = axis[None, :, None] - path.y[:, None, None]
    qx = (cos[:, None, None] * dx + sin[:, None, None] * dy) * inv[:, None, None]
    qy = (-sin[:, None, None] * dx + cos[:, None, None] * dy) * inv[:, None, None]
    grid = torch.from_numpy(np.stack([qx, qy], axis=-1).astype(np.float32))
    src = torch.from_numpy(np.ascontiguousarray(sprite, np.float32))[None, None].expand(
        len(path), 1, -1, -1).contiguous()
    alpha = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)[:, 0].clamp(0, 1).numpy()[..., None]
    frames = background[None] * (1 - alpha) + np.asarray(color, np.float32) * alpha
    return np.round(frames * 255).clip(0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    photos = []
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos.append(img[..., :3].astype(np.float32) / 255.0)
    return tuple(photos)


@lru_cache(maxsize=1)
def _digit_sprites() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    scans = (bunch.images / 16.0).astype(np.float32)
    sprites = np.stack([cv2.resize(s, (SPRITE_SIDE, SPRITE_SIDE), interpolation=cv2.INTER_CUBIC)
                        for s in scans]).clip(0, 1)
    return sprites, bunch.target.astype(np.int64)


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop (random place, side 30–100 % of the shorter edge, maybe mirrored) of a
    random bundled photograph, ``[size, size, 3]`` in ``[0, BACKGROUND_DIM]``."""
    photo = _photos()[int(rng.integers(len(PHOTOS)))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)
    return out * BACKGROUND_DIM


def random_color(rng: np.random.Generator) -> tuple[float, float, float]:
    """A bright colour (one channel at full value) so the actor stands out from the photo."""
    color = rng.uniform(0.3, 1.0, 3)
    color[int(rng.integers(3))] = 1.0
    return tuple(float(c) for c in color)  # type: ignore[return-value]


def generate_moving_digits(videos_per_class: int = 60, num_frames: int = 16, size: int = 32,
                           seed: int = 0) -> VideoSet:
    """``videos_per_class × 10`` clips ``[N, 3, T, size, size]`` uint8, labelled by motion;
    ``groups`` holds each clip's digit (a nuisance, kept for analysis)."""
    if videos_per_class < 1 or num_frames < 2 or size < 8:
        raise ValueError("moving_digits needs videos_per_class >= 1, num_frames >= 2 and "
                         f"size >= 8; got {videos_per_class}, {num_frames}, {size}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one tiny warp per clip: thread start-up costs more than it saves
    try:
        return _generate(videos_per_class, num_frames, size, seed)
    finally:
        torch.set_num_threads(threads)


def _generate(videos_per_class: int, num_frames: int, size: int, seed: int) -> VideoSet:
    sprites, _ = _digit_sprites()
    rng = np.random.default_rng([seed, 0x3D161])
    labels = np.repeat(np.arange(len(MOTIONS)), videos_per_class)
    videos = np.empty((len(labels), 3, num_frames, size, size), np.uint8)
    digits = np.empty(len(labels), np.int64)
    for i, label in enumerate(labels):
        digit = int(rng.integers(len(sprites)))
        path = motion_path(MOTIONS[label], num_frames, rng)
        frames = render_along_path(sprites[digit], random_background(rng, size), path, size,
                                   random_color(rng))
        videos[i] = frames.transpose(3, 0, 1, 2)
        digits[i] = digit
    _, digit_classes = _digit_sprites()
    return VideoSet(torch.from_numpy(videos), labels.astype(np.int64), list(MOTIONS),
                    groups=digit_classes[digits], fps=8.0)


def default_cache_dir() -> Path:
    return Path(os.environ.get("AVFED_CACHE", Path.home() / ".cache" / "avfed")) / "moving_digits"


def load_moving_digits(videos_per_class: int = 60, num_frames: int = 16, size: int = 32,
                       seed: int = 0, cache_dir: str | Path | None = None) -> VideoSet:
    """:func:`generate_moving_digits`, generated once and then read from the cache."""
    settings = {"version": CORPUS_VERSION, "videos_per_class": videos_per_class,
                "num_frames": num_frames, "size": size, "seed": seed}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"moving_digits-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as blob:
                return VideoSet(torch.from_numpy(blob["videos"]), blob["labels"], list(MOTIONS),
                                groups=blob["groups"], fps=8.0)
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"cached clips {path} are unreadable ({err}); regenerating them",
                          RuntimeWarning, stacklevel=2)
    data = generate_moving_digits(videos_per_class, num_frames, size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    # a per-process temporary name: simulation actors warming the same cache never collide
    tmp = folder / f".{path.stem}.{os.getpid()}.npz"
    assert data.groups is not None
    np.savez(tmp, videos=data.images.numpy(), labels=data.labels, groups=data.groups)
    os.replace(tmp, path)
    return data
