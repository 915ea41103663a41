"""MoCo v2 (Chen et al., 2020): contrast each query with a momentum key and a queue of past keys.

The queue decouples the number of negatives from the batch size, which matters on
clients that can only afford small batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avfed.ssl.heads import moco_projector
from avfed.ssl.losses import info_nce_with_queue
from avfed.ssl.momentum import (
    MomentumTarget,
    MomentumTargetMethod,
    check_flag,
    shared_prefixes_for,
)
from avfed.ssl.registry import register_method


class MoCoV2(MomentumTargetMethod):
    """MoCo v2: query encoder (backbone + MLP head), momentum key encoder, key queue.

    Each query is scored against the key of the other view of its image (positive)
    and the ``queue_size`` most recent keys (negatives), InfoNCE at ``temperature``
    (0.2, MoCo v2's value). The key encoder is an EMA of the query encoder, updated in
    ``after_step`` with ``momentum`` (0.99 and K = 4096 as in the CIFAR setting of
    FedU/FedEMA's public code; MoCo v2 on ImageNet uses 0.999 and 65536). With
    ``symmetric=True`` (that code's default) both views serve as queries and the loss
    is the mean of the two directions; ``False`` is the paper's one-directional form.

    Queue: a ring buffer of L2-normalised keys, oldest overwritten first, filled with
    random unit vectors at start as in the original code. Any number of keys per step
    is handled, wrapping around the end; a step with more keys than ``queue_size``
    keeps only its last ``queue_size``. Keys are enqueued when ``training_loss`` runs in
    training mode (after the loss has used the old queue); in eval mode the queue is
    left alone, so a validation loss does not disturb it. A queue much larger than a
    client's dataset makes stale keys of the same examples act as their own
    negatives: keep ``queue_size`` below the number of examples a client holds.

    Shuffle-BN is left out. It keeps a query and its positive key from sharing batch
    statistics by shuffling the key batch across GPUs, each normalising its own share;
    on one device the key encoder's batch norm sees the whole batch whatever its order,
    so a shuffle changes nothing (FedU/FedEMA's single-GPU shuffle is a no-op for the
    same reason). The small leak it guards against is accepted here.

    Shared with the server: the query backbone and head (``share_heads=False``: the
    backbone alone). The queue never leaves the client: it holds embeddings of the
    client's private examples, one per example seen, and sending them would reveal far
    more about those examples than averaged weights do. The key encoder is local too;
    by default (``target_from_global``)
    each round rebuilds it from the received global query encoder, as FedU/FedEMA's
    code resets it at the start of local training, so that keys come from an encoder
    consistent with the model being trained; ``False`` carries it across rounds like
    BYOL's target.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int = 4096,
        symmetric: bool = True,
        momentum_schedule_steps: int = 0,
        target_from_global: bool = True,
        share_heads: bool = True,
    ) -> None:
        super().__init__(backbone)
        if temperature <= 0:
            raise ValueError(f"ssl.args.temperature must be > 0, got {temperature}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"ssl.args.queue_size must be an integer >= 1, got {queue_size!r}")
        self.temperature = temperature
        self.symmetric = check_flag("symmetric", symmetric)
        self.target_from_global = check_flag("target_from_global", target_from_global)
        self.projector = moco_projector(backbone.num_features, hidden_dim, projection_dim)
        self.target = MomentumTarget(self.online_modules(), momentum, momentum_schedule_steps)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.shared_prefixes = shared_prefixes_for(
            ("projector.",), check_flag("share_heads", share_heads))

    def online_modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "projector": self.projector}

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised key-encoder embeddings of ``x``."""
        return F.normalize(self.target(x), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` into the ring after the newest entry, as if one by one."""
        size, count = len(self.queue), len(keys)
        kept = keys[-size:]
        start = int(self.queue_ptr) + count - len(kept)
        slots = (start + torch.arange(len(kept), device=keys.device)) % size
        self.queue[slots] = kept.to(self.queue.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + count) % size)

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        negatives = self.queue.clone()
        q1 = self.projector(self.backbone(view1))
        k2 = self.keys(view2)
        if self.symmetric:
            q2 = self.projector(self.backbone(view2))
            k1 = self.keys(view1)
            loss = 0.5 * (info_nce_with_queue(q1, k2, negatives, self.temperature)
                          + info_nce_with_queue(q2, k1, negatives, self.temperature))
            new_keys = torch.cat([k2, k1])
        else:
            loss = info_nce_with_queue(q1, k2, negatives, self.temperature)
            new_keys = k2
        if self.training:
            self.enqueue(new_keys)
        return loss


@register_method("moco_v2", "MoCo v2: InfoNCE against a momentum key and a local key queue")
def moco_v2(backbone: nn.Module, **kwargs: object) -> MoCoV2:
    return MoCoV2(backbone, **kwargs)  # type: ignore[arg-type]
