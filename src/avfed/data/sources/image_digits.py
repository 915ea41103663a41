"""The built-in ``image_digits`` corpus: scikit-learn's 1,797 real handwritten digits.

The 8×8 scans ship inside scikit-learn, so the demo needs no download; they are
upscaled to the CIFAR-style 32×32 that the small ResNets expect.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from avfed.data.types import ImageSet

CLASSES = [str(d) for d in range(10)]


def load_image_digits(
    image_size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Return a stratified (train, test) split as 1-channel images in ``[0, 1]``."""
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    bunch = load_digits()
    small = (bunch.images / 16.0).astype(np.float32)  # scanner values are 0..16
    big = np.stack(
        [cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_CUBIC) for img in small]
    )
    images = torch.from_numpy(np.clip(big, 0.0, 1.0)).unsqueeze(1)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    full = ImageSet(images, labels, CLASSES)
    return full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx))
