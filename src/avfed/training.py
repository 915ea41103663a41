"""Local SSL training: the loop a federated client (or a centralised run) executes.

Batches are drawn by index from one in-memory tensor and augmented on the fly in one
kornia call per view: no DataLoader workers, which would oversubscribe the cores
that the simulation engine has already divided among client actors. Views are made in
fp32; the method's forward pass and loss run in the precision and memory format of
``train.precision`` / ``train.memory_format`` (:mod:`avfed.precision`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from avfed.config import TrainConfig
from avfed.models.multimodal import use_modality
from avfed.optimizers import make_optimizer
from avfed.precision import Acceleration
from avfed.ssl.base import SSLMethod


@dataclass
class TrainResult:
    loss: float  # mean loss over the last epoch
    first_loss: float  # mean loss over the first epoch
    num_examples: int
    seconds: float
    steps: int


def batch_plan(
    sizes: dict[str, int], batch_size: int, generator: torch.Generator | None
) -> list[tuple[str, torch.Tensor]]:
    """One epoch's batches as (modality, indices), modalities interleaved round-robin.

    Interleaving (rather than all images, then all audio) keeps a multi-modal client's
    shared trunk from drifting towards whichever modality it saw last.
    """
    queues: list[list[tuple[str, torch.Tensor]]] = []
    for modality, n in sizes.items():
        batch = min(batch_size, n)
        order = torch.randperm(n, generator=generator)
        queues.append([(modality, order[b * batch : (b + 1) * batch])
                       for b in range(max(1, n // batch))])
    plan: list[tuple[str, torch.Tensor]] = []
    for i in range(max(len(q) for q in queues)):
        plan += [q[i] for q in queues if i < len(q)]
    return plan


def train_ssl(
    method: SSLMethod,
    images: torch.Tensor | Mapping[str, torch.Tensor],
    augment: torch.nn.Module | Mapping[str, torch.nn.Module],
    cfg: TrainConfig,
    *,
    epochs: int | None = None,
    generator: torch.Generator | None = None,
    device: str = "cpu",
    regularizer: Callable[[], torch.Tensor] | None = None,
    acceleration: Acceleration | None = None,
) -> TrainResult:
    """Train ``method`` on ``images`` for ``epochs`` (default ``cfg.local_epochs``).

    ``images`` is one tensor, or ``{modality: tensor}`` with ``augment`` keyed the same
    way for a client that holds several modalities (each batch holds one modality
    and is routed to its stem). The last incomplete batch is dropped unless it is the
    only one, since contrastive losses on 1–2 samples are meaningless and BatchNorm
    fails on a single row. ``regularizer`` (e.g. FedProx's proximal term) is added to
    the loss that is optimised but not to the loss that is reported, so losses stay
    comparable across aggregation rules. ``acceleration`` is the task's resolved
    precision and memory format (default: resolved from ``cfg`` and applied to
    ``method`` here); the regularizer is computed in fp32, outside autocast.
    """
    inputs = dict(images) if isinstance(images, Mapping) else {"": images}
    augments = dict(augment) if isinstance(augment, Mapping) else {"": augment}
    for modality, x in inputs.items():
        if len(x) < 2:
            raise ValueError(f"need at least 2 examples to train, got {len(x)}"
                             + (f" for {modality}" if modality else ""))
        if modality not in augments:
            raise ValueError(f"no augmentation given for modality '{modality}'")
    epochs = epochs or cfg.local_epochs
    if acceleration is None:
        acceleration = Acceleration.for_model(cfg, device, method)
    optimizer = make_optimizer(method, cfg)
    step = acceleration.stepper(optimizer)
    method.train()
    start = time.perf_counter()
    epoch_losses: list[float] = []
    steps = 0
    for _ in range(epochs):
        plan = batch_plan({m: len(x) for m, x in inputs.items()}, cfg.batch_size, generator)
        total = 0.0
        for modality, idx in plan:
            x = inputs[modality][idx].to(device)
            with use_modality(method, modality or None):
                view1, view2 = augments[modality](x), augments[modality](x)
                with acceleration.autocast():
                    loss = method.training_loss(acceleration.to_input(view1),
                                                acceleration.to_input(view2)).float()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"SSL loss became {value} at step {steps}")
            step(loss if regularizer is None else loss + regularizer())
            method.after_step()
            total += value
            steps += 1
        epoch_losses.append(total / len(plan))
    return TrainResult(
        loss=epoch_losses[-1],
        first_loss=epoch_losses[0],
        num_examples=sum(len(x) for x in inputs.values()),
        seconds=time.perf_counter() - start,
        steps=steps,
    )
