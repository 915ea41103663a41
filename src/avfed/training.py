"""Local SSL training: the loop a federated client (or a centralised run) executes.

Batches are drawn by index from one in-memory tensor and augmented on the fly in one
kornia call per view: no DataLoader workers, which would oversubscribe the cores
that the simulation engine has already divided among client actors.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from avfed.config import TrainConfig
from avfed.ssl.base import SSLMethod


@dataclass
class TrainResult:
    loss: float  # mean loss over the last epoch
    first_loss: float  # mean loss over the first epoch
    num_examples: int
    seconds: float
    steps: int


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_ssl(
    method: SSLMethod,
    images: torch.Tensor,
    augment: torch.nn.Module,
    cfg: TrainConfig,
    *,
    epochs: int | None = None,
    generator: torch.Generator | None = None,
    device: str = "cpu",
) -> TrainResult:
    """Train ``method`` on ``images`` for ``epochs`` (default ``cfg.local_epochs``).

    The last incomplete batch is dropped unless it is the only one, since contrastive
    losses on 1–2 samples are meaningless and BatchNorm fails on a single row.
    """
    n = len(images)
    if n < 2:
        raise ValueError(f"need at least 2 examples to train, got {n}")
    epochs = epochs or cfg.local_epochs
    batch = min(cfg.batch_size, n)
    batches_per_epoch = max(1, n // batch)
    optimizer = make_optimizer([p for p in method.parameters() if p.requires_grad], cfg)
    method.train()
    start = time.perf_counter()
    epoch_losses: list[float] = []
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for b in range(batches_per_epoch):
            x = images[order[b * batch : (b + 1) * batch]].to(device)
            view1, view2 = augment(x), augment(x)
            loss = method.training_loss(view1, view2)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"SSL loss became {loss.item()} at step {steps}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            method.after_step()
            total += loss.item()
            steps += 1
        epoch_losses.append(total / batches_per_epoch)
    return TrainResult(
        loss=epoch_losses[-1],
        first_loss=epoch_losses[0],
        num_examples=n,
        seconds=time.perf_counter() - start,
        steps=steps,
    )
