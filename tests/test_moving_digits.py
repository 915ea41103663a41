"""The built-in moving_digits clips: deterministic, cached, and showing the labelled motion."""

import cv2
import numpy as np
import pytest
import torch

from avfed.data.sources.moving_digits import (
    MOTIONS,
    generate_moving_digits,
    load_moving_digits,
    motion_path,
    render_along_path,
)

SIZE, FRAMES = 48, 12


def _bar_sprite() -> np.ndarray:
    """An upright bar with a foot (an "L"): its centroid, area and orientation are easy to
    read back, and it is not symmetric under any rotation we test."""
    sprite = np.zeros((24, 24), np.float32)
    sprite[2:22, 9:14] = 1.0
    sprite[17:22, 9:20] = 1.0
    return sprite


def _masks(motion: str, seed: int) -> np.ndarray:
    path = motion_path(motion, FRAMES, np.random.default_rng(seed))
    frames = render_along_path(_bar_sprite(), np.zeros((SIZE, SIZE, 3), np.float32), path, SIZE)
    return frames[..., 0].astype(np.float32) / 255.0  # [T, H, W] coverage


def _centroids(masks: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[:SIZE, :SIZE]
    total = masks.sum(axis=(1, 2))
    return np.stack([(masks * xs).sum(axis=(1, 2)) / total,
                     (masks * ys).sum(axis=(1, 2)) / total], axis=1)


def _rotation_between(first: np.ndarray, later: np.ndarray) -> float:
    """The on-screen rotation (degrees, positive = clockwise) that best maps ``first``
    onto ``later`` about ``first``'s centroid, by brute force over -90..90."""
    cx, cy = _centroids(first[None])[0]
    shift = _centroids(later[None])[0] - (cx, cy)
    best, best_score = 0.0, -1.0
    for angle in np.arange(-90, 91, 5):
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), -float(angle), 1.0)  # cv2: ccw +
        m[:, 2] += shift
        moved = cv2.warpAffine(first, m, (SIZE, SIZE))
        score = float((moved * later).sum() / np.sqrt((moved**2).sum() * (later**2).sum()))
        if score > best_score:
            best, best_score = float(angle), score
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_clip_shows_its_labelled_motion(seed):
    for motion in MOTIONS:
        masks = _masks(motion, seed * 17 + MOTIONS.index(motion))
        c = _centroids(masks)
        dx, dy = c[-1] - c[0]
        area = masks.sum(axis=(1, 2))
        travel = 0.2 * SIZE
        if motion == "left_to_right":
            assert dx > travel and abs(dy) < 2, motion
        elif motion == "right_to_left":
            assert dx < -travel and abs(dy) < 2, motion
        elif motion == "up":
            assert dy < -travel and abs(dx) < 2, motion
        elif motion == "down":
            assert dy > travel and abs(dx) < 2, motion
        elif motion == "diagonal":
            assert dx > travel / 2 and dy < -travel / 2, motion
        elif motion == "circle":
            x, y = c[:, 0] - c[:, 0].mean(), c[:, 1] - c[:, 1].mean()
            signed_area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
            assert signed_area > 0.05 * SIZE**2, motion  # clockwise on screen (y down)
            assert np.hypot(dx, dy) < 0.5 * np.ptp(c[:, 0]), motion  # comes back round
        elif motion in ("zoom_in", "zoom_out"):
            grows = area[-1] / area[0]
            assert (grows > 3) if motion == "zoom_in" else (grows < 1 / 3), (motion, grows)
            assert np.hypot(dx, dy) < 2, motion
        else:
            turned = _rotation_between(masks[0], masks[FRAMES // 3])
            assert (turned > 20) if motion == "rotate_cw" else (turned < -20), (motion, turned)
            assert abs(area[-1] / area[0] - 1) < 0.15, motion


def test_generation_is_deterministic_by_seed_and_balanced():
    a = generate_moving_digits(videos_per_class=2, num_frames=6, size=16, seed=3)
    b = generate_moving_digits(videos_per_class=2, num_frames=6, size=16, seed=3)
    c = generate_moving_digits(videos_per_class=2, num_frames=6, size=16, seed=4)
    assert a.images.shape == (20, 3, 6, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert np.bincount(a.labels).tolist() == [2] * len(MOTIONS)
    assert a.classes == list(MOTIONS)
    # frames of a clip differ (something moves), the background does not vanish
    assert (a.images[:, :, 0].float() - a.images[:, :, -1].float()).abs().mean() > 1


def test_clips_are_cached_and_read_back(tmp_path):
    first = load_moving_digits(2, 6, 16, seed=5, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("moving_digits-*.npz")
    again = load_moving_digits(2, 6, 16, seed=5, cache_dir=tmp_path)
    assert torch.equal(first.images, again.images)
    assert np.array_equal(first.groups, again.groups)
    cached.write_bytes(b"not an npz")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        rebuilt = load_moving_digits(2, 6, 16, seed=5, cache_dir=tmp_path)
    assert torch.equal(first.images, rebuilt.images)


def test_unknown_motion_and_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="unknown motion"):
        motion_path("jump", 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_frames"):
        generate_moving_digits(1, 1, 16)
