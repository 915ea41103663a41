"""Fine-tuning (``task.name=finetune``): the supervised task, starting from a checkpoint.

``task.args.init`` names a safetensors file written by an earlier run (typically an SSL
run's ``final.safetensors``); the backbone takes the tensors of it that fit by name
and shape (see :mod:`avfed.tasks.weights`), the linear head starts fresh. Two modes:

- ``full``: backbone and head train; the backbone's learning rate is ``train.lr ×
  backbone_lr_scale`` (a smaller rate keeps more of the pre-trained features), the
  head's ``train.lr``;
- ``linear``: the backbone is frozen (no gradient, BatchNorm statistics fixed: eval
  mode) and only the head trains, the supervised counterpart of the linear probe. As
  a probe standardises its features, the head reads them through a BatchNorm without
  affine terms (MAE's linear probing, He et al., 2022), so one learning rate suits
  whatever scale pre-training left the features at.

Every node builds the task, so a checkpoint that is missing or does not fit is a
start-up error naming ``task.args.init``, before any engine starts.
"""

from __future__ import annotations

import torch
from rich.console import Console
from rich.markup import escape

from avfed.config import ConfigError
from avfed.tasks.parts import RunParts
from avfed.tasks.registry import register_task
from avfed.tasks.supervised import SupervisedTask, check_arg_range
from avfed.tasks.weights import InitReport, load_backbone_weights, read_init_checkpoint

MODES = ("full", "linear")
INIT_FIELD = "task.args.init"

console = Console(highlight=False, soft_wrap=True)


def scale_lr(optimizer: torch.optim.Optimizer, params: set[int], factor: float) -> None:
    """Give the parameters whose ``id`` is in ``params`` ``factor`` × their group's rate.

    Each parameter group is split in two with the same settings otherwise; per-parameter
    optimizer state (RepOpt's gradient multipliers) is keyed by the parameter and stays.
    """
    groups = []
    for group in optimizer.param_groups:
        inside = [p for p in group["params"] if id(p) in params]
        outside = [p for p in group["params"] if id(p) not in params]
        for members, scale in ((outside, 1.0), (inside, factor)):
            if members:
                groups.append({**group, "params": members, "lr": group["lr"] * scale})
    optimizer.param_groups = groups


class FinetuneTask(SupervisedTask):
    """The supervised task on a backbone loaded from ``init``; ``mode`` full or linear."""

    name = "finetune"

    def __init__(self, parts: RunParts, init: str | None = None, mode: str = "full",
                 backbone_lr_scale: float = 1.0, label_smoothing: float = 0.0,
                 mixup: float = 0.0, augment: bool = True) -> None:
        if mode not in MODES:
            raise ConfigError(f"invalid recipe field 'task.args.mode': '{mode}' is not a "
                              f"fine-tuning mode; valid: {', '.join(MODES)}")
        check_arg_range("backbone_lr_scale", backbone_lr_scale, 0.0)
        state = read_init_checkpoint(init, INIT_FIELD)  # a missing file fails before building
        # a frozen backbone's features keep whatever scale pre-training left them at:
        # standardised, the head trains at train.lr as a linear probe would
        super().__init__(parts, label_smoothing=label_smoothing, mixup=mixup, augment=augment,
                         standardize=mode == "linear")
        self.mode, self.backbone_lr_scale = mode, float(backbone_lr_scale)
        self.init_report: InitReport = load_backbone_weights(self.model.backbone, init,
                                                             INIT_FIELD, state)
        console.print(f"finetune ({mode}): {escape(self.init_report.summary())}")
        if mode == "linear":
            self.model.backbone.requires_grad_(False)

    def make_optimizer(self) -> torch.optim.Optimizer:
        optimizer = super().make_optimizer()  # over the trainable parameters only
        if self.mode == "full" and self.backbone_lr_scale != 1.0:
            scale_lr(optimizer, {id(p) for p in self.model.backbone.parameters()},
                     self.backbone_lr_scale)
        return optimizer

    def set_train_mode(self) -> None:
        self.model.train()
        if self.mode == "linear":
            self.model.backbone.eval()  # frozen means frozen: BN statistics too


@register_task("finetune", "the supervised task from a checkpoint (args: init, mode=full|"
                           "linear, backbone_lr_scale, label_smoothing, mixup, augment)")
def finetune_task(parts: RunParts, init: str | None = None, mode: str = "full",
                  backbone_lr_scale: float = 1.0, label_smoothing: float = 0.0,
                  mixup: float = 0.0, augment: bool = True) -> FinetuneTask:
    return FinetuneTask(parts, init=init, mode=mode, backbone_lr_scale=backbone_lr_scale,
                        label_smoothing=label_smoothing, mixup=mixup, augment=augment)
