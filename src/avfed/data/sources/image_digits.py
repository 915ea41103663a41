"""The built-in ``image_digits`` corpus: scikit-learn's 1,797 real handwritten digits.

The 8×8 scans ship inside scikit-learn, so the demo needs no download; they are
upscaled to the CIFAR-style 32×32 that the small ResNets expect.

The scans are read straight from the CSV in scikit-learn's package data, and split by
:func:`stratified_train_test_split`, rather than through ``sklearn.datasets`` and
``sklearn.model_selection``: importing scikit-learn costs about a second of every
process that loads the data — each simulated client among them — and neither needs
anything else from it. Both return exactly what scikit-learn's ``load_digits`` and
stratified ``train_test_split`` return (tests/test_startup_cache.py compares them).
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from math import ceil
from pathlib import Path

import cv2
import numpy as np
import torch

from avfed.data.types import ImageSet

CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitScans:
    """The fields of scikit-learn's digits bunch that avfed reads."""

    images: np.ndarray  # [1797, 8, 8] float64, scanner values 0..16
    target: np.ndarray  # [1797] int


def _digits_csv() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz``, located without importing it
    (``find_spec`` of a top-level package only looks the package up)."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def load_digit_scans() -> DigitScans:
    """scikit-learn's digits as ``load_digits()`` gives them (each CSV row: 64 pixel
    values, then the label); falls back to ``load_digits`` itself where scikit-learn
    keeps its data elsewhere."""
    path = _digits_csv()
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return DigitScans(bunch.images, bunch.target)
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return DigitScans(data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int))


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState
                      ) -> np.ndarray:
    """How many of ``draws`` each class gets: its proportional share rounded down, and
    the draws left over go to the largest fractional parts, ties broken by ``rng`` (the
    rule, and the random calls, of scikit-learn's stratified splitters)."""
    share = counts / counts.sum() * draws
    given = np.floor(share)
    left = int(draws - given.sum())
    if left > 0:
        fraction = share - given
        for value in np.sort(np.unique(fraction))[::-1]:
            (tied,) = np.where(fraction == value)
            take = min(len(tied), left)
            given[rng.choice(tied, size=take, replace=False)] += 1
            left -= take
            if left == 0:
                break
    return given.astype(int)


def stratified_train_test_split(labels: np.ndarray, test_size: float, random_state: int
                                ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of ``labels``: the same indices, in the same order, as
    ``train_test_split(np.arange(len(labels)), test_size=test_size,
    random_state=random_state, stratify=labels)`` in scikit-learn (pinned by a test)."""
    labels = np.asarray(labels)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    n_test = ceil(test_size * len(labels))
    n_train = len(labels) - n_test
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2 or min(n_train, n_test) < len(counts):
        raise ValueError(f"cannot stratify {len(labels)} labels of {len(counts)} classes "
                         f"(smallest class {counts.min()}) with test_size={test_size}")
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(random_state)
    train_counts = _approximate_mode(counts, n_train, rng)
    test_counts = _approximate_mode(counts - train_counts, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for members, n_tr, n_te in zip(by_class, train_counts, test_counts, strict=True):
        shuffled = members.take(rng.permutation(len(members)), mode="clip")
        train.extend(shuffled[:n_tr])
        test.extend(shuffled[n_tr : n_tr + n_te])
    return rng.permutation(train), rng.permutation(test)


def train_test_split(indices: np.ndarray, *, test_size: float, random_state: int,
                     stratify: np.ndarray) -> list[np.ndarray]:
    """Drop-in for scikit-learn's stratified ``train_test_split`` of one index array."""
    train, test = stratified_train_test_split(stratify, test_size, random_state)
    indices = np.asarray(indices)
    return [indices[train], indices[test]]


def load_image_digits(
    image_size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Return a stratified (train, test) split as 1-channel images in ``[0, 1]``."""
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    bunch = load_digit_scans()
    small = (bunch.images / 16.0).astype(np.float32)  # scanner values are 0..16
    big = np.stack(
        [cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_CUBIC) for img in small]
    )
    images = torch.from_numpy(np.clip(big, 0.0, 1.0)).unsqueeze(1)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_train_test_split(labels, test_fraction, seed)
    full = ImageSet(images, labels, CLASSES)
    return full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx))
