"""Data sources by name, so a recipe's ``data.source`` picks one.

Every image source returns a labelled (train, test) pair: the train split is what
clients pretrain on (labels unused by SSL, kept for partitioning and evaluation), the
test split is the held-out set for kNN and the linear probe.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from avfed.config import DataConfig
from avfed.data.types import ImageSet
from avfed.registry import Registry

ImageSplit = tuple[ImageSet, ImageSet]
image_sources: Registry[ImageSplit] = Registry("image data source")


@image_sources.register("image_digits", "scikit-learn's handwritten digits, 32×32 (built in)")
def _image_digits(cfg: DataConfig, seed: int) -> ImageSplit:
    from avfed.data.sources.image_digits import load_image_digits

    return load_image_digits(cfg.image_size, cfg.test_fraction, seed)


@image_sources.register("image_folder", "your images in root/<class>/<file> (ImageFolder layout)")
def _image_folder(cfg: DataConfig, seed: int) -> ImageSplit:
    from avfed.data.sources.folders import load_image_folder

    if not cfg.root:
        raise ValueError("data.root must name a folder when data.source=image_folder")
    full = load_image_folder(cfg.root, image_size=cfg.image_size)
    return stratified_split(full, cfg.test_fraction, seed)


def stratified_split(data: ImageSet, test_fraction: float, seed: int) -> ImageSplit:
    """Split per class so that every class appears in both halves when it can."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for label in np.unique(data.labels):
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        n_test = int(round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.append(idx[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(data)), test_idx)
    train, held_out = data.subset(train_idx), data.subset(test_idx)
    train.skipped = list(data.skipped)
    return train, held_out


def load_image_split(cfg: DataConfig, seed: int) -> ImageSplit:
    factory: Callable[..., ImageSplit] = image_sources.get(cfg.source)
    return factory(cfg, seed)
