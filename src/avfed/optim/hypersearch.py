"""Hyper-search: learn RepOpt's constant branch scales on a small labelled dataset.

The HS model is the CSLA twin with trainable scales plus a linear classifier. It is
trained briefly and centrally with supervised cross-entropy; only the scales it ends
with are kept, frozen, as RepOptSGD's constants for every later (federated) run.
FedRepOpt searches on CIFAR-100 with the reference recipe: SGD, cosine schedule with
linear warm-up, label smoothing 0.1, gradient clipping at 5; VGG-B1 240 epochs at lr 0.1,
weight decay 4e-5, batch 32; Ghost 600 epochs at lr 0.6, weight decay 1e-5, batch 128.

    python -m avfed.optim.hypersearch --model repopt_vgg_tiny --epochs 5 --out scales.safetensors

runs it on the built-in handwritten digits.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avfed.models.repopt_models import REPOPT_ARCHITECTURES
from avfed.optim.csla import branch_scales, build_csla_model
from avfed.optim.repopt import decay_param_groups
from avfed.optim.scales import save_scales

log = logging.getLogger(__name__)


def _check_inputs(
    model_name: str, images: torch.Tensor, labels: torch.Tensor, epochs: int, batch_size: int
) -> None:
    if model_name not in REPOPT_ARCHITECTURES:
        raise ValueError(f"model_name must be one of {sorted(REPOPT_ARCHITECTURES)}, "
                         f"got '{model_name}'")
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be one integer per image ({len(images)}), got shape "
                         f"{tuple(labels.shape)}")
    if len(images) < 2:
        raise ValueError(f"need at least 2 images for BatchNorm, got {len(images)}")
    if labels.min() < 0:
        raise ValueError("labels must be >= 0")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")


def _cosine_with_warmup(total_steps: int, warmup_steps: int):
    """lr factor per step: linear ramp over ``warmup_steps``, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def hyper_search(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    epochs: int,
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 4e-5,
    batch_size: int = 32,
    label_smoothing: float = 0.1,
    clip_grad: float = 5.0,
    warmup_epochs: int = 0,
    stem_stride: int = 1,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Train the HS twin of ``model_name`` on ``(images, labels)``; return its scales.

    The returned dict (keys ``<conv path>.scale_conv`` / ``.scale_1x1`` /
    ``.scale_identity``) feeds :func:`avfed.optim.initialize_from_scales` and
    :func:`avfed.optim.build_repopt_optimizer`, and saves with
    :func:`avfed.optim.save_scales`.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    _check_inputs(model_name, images, labels, epochs, batch_size)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    backbone = build_csla_model(model_name, trainable_scales=True,
                                in_chans=images.shape[1], stem_stride=stem_stride)
    model = nn.Sequential(backbone, nn.Linear(backbone.num_features, int(labels.max()) + 1))
    optimizer = torch.optim.SGD(decay_param_groups(model, weight_decay), lr=lr,
                                momentum=momentum)
    batch = min(batch_size, len(images))
    steps_per_epoch = max(1, len(images) // batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(epochs * steps_per_epoch, warmup_epochs * steps_per_epoch)
    )
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch : (step + 1) * batch]
            loss = F.cross_entropy(model(images[idx]), labels[idx],
                                   label_smoothing=label_smoothing)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"hyper-search loss became {loss.item()} in epoch "
                                         f"{epoch}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            schedule.step()
            total += loss.item()
        log.info("hyper-search epoch %d/%d: loss %.4f", epoch + 1, epochs,
                 total / steps_per_epoch)
    return branch_scales(backbone)


def main(argv: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Command line: hyper-search on the built-in digits, scales to a safetensors file."""
    from avfed.data.sources.image_digits import load_image_digits

    parser = argparse.ArgumentParser(
        prog="python -m avfed.optim.hypersearch",
        description="Search RepOpt branch scales on the built-in handwritten digits.",
    )
    parser.add_argument("--model", required=True, choices=sorted(REPOPT_ARCHITECTURES))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", required=True, help="safetensors file to write")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=4e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-epochs", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N training images (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error(f"--limit must be >= 0, got {args.limit}")

    train, _ = load_image_digits(image_size=args.image_size, seed=args.seed)
    images, labels = train.images, torch.from_numpy(train.labels)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    scales = hyper_search(
        args.model, images, labels, args.epochs, lr=args.lr, weight_decay=args.weight_decay,
        batch_size=args.batch_size, warmup_epochs=args.warmup_epochs,
        stem_stride=args.stem_stride, seed=args.seed,
    )
    save_scales(scales, args.out)
    means = {kind: torch.cat([v for k, v in scales.items() if k.endswith(kind)]).mean().item()
             for kind in ("scale_conv", "scale_1x1", "scale_identity")
             if any(k.endswith(kind) for k in scales)}
    summary = ", ".join(f"{kind} mean {value:.3f}" for kind, value in means.items())
    print(f"wrote {len(scales)} scale vectors to {args.out} ({summary})")
    return scales


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
