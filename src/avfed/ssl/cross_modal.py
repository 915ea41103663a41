"""FSSUAVL's optional auxiliary term: align the few cross-modal pairs a client has.

Unpaired audio-visual SSL needs no pairs at all; where a client does hold both
modalities with a known correspondence (the image of a "3" and a spoken "three"),
that auxiliary information can pull the two embeddings of a pair together. The term
is NT-Xent between a batch of image embeddings and the embeddings of their paired
audio, computed through the shared backbone and projector, and is added to the
client's SSL loss with weight ``ssl.cross_modal_weight`` (0 = off, the default).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from avfed.ssl.base import SSLMethod
from avfed.ssl.losses import nt_xent


def label_pairs(image_labels: np.ndarray, audio_labels: np.ndarray,
                generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pair every image with a random audio clip of the same class (where one exists)."""
    by_class = {c: np.flatnonzero(audio_labels == c) for c in np.unique(audio_labels)}
    images, audio = [], []
    for i, label in enumerate(image_labels):
        candidates = by_class.get(label)
        if candidates is not None and len(candidates):
            images.append(i)
            audio.append(int(generator.choice(candidates)))
    return np.asarray(images, dtype=np.int64), np.asarray(audio, dtype=np.int64)


def cross_modal_regularizer(
    method: SSLMethod,
    images: torch.Tensor,
    audio: torch.Tensor,
    pairs: tuple[np.ndarray, np.ndarray],
    *,
    weight: float,
    batch_size: int,
    temperature: float = 0.5,
    seed: int = 0,
) -> Callable[[], torch.Tensor] | None:
    """A closure giving ``weight · NT-Xent(image_i, audio_i)`` on a fresh batch of pairs.

    ``images`` and ``audio`` may stay on the CPU: each call moves its batch to the device
    of ``method``'s parameters at that moment (the training loop moves the method to its
    device after this closure is built).
    """
    if weight <= 0 or len(pairs[0]) < 2:
        return None
    projector = getattr(method, "projector", None)
    if projector is None:
        raise ValueError(f"ssl.cross_modal_weight needs a method with a projector; "
                         f"{type(method).__name__} has none")
    rng = torch.Generator().manual_seed(seed)
    image_idx, audio_idx = (torch.from_numpy(p) for p in pairs)
    batch = min(batch_size, len(image_idx))

    def term() -> torch.Tensor:
        pick = torch.randperm(len(image_idx), generator=rng)[:batch]
        device = next(method.parameters()).device
        feats = method.backbone({"image": images[image_idx[pick]].to(device),
                                 "audio": audio[audio_idx[pick]].to(device)})
        z = projector(feats)
        return weight * nt_xent(z[:batch], z[batch:], temperature)

    return term
