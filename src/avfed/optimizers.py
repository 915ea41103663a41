"""Local optimizers by name (``train.optimizer``): ``avfed optimizers`` lists them.

Each factory takes the module to optimise and the run's :class:`TrainConfig`. The run
builder creates the optimizer once on the initial model before any client starts, so
a pairing that cannot work (RepOpt on a model without RepOpt layers) is a start-up
error rather than one traceback per client.
"""

from __future__ import annotations

import torch
from torch import nn

from avfed.config import ConfigError, TrainConfig
from avfed.registry import Registry

optimizer_registry: Registry[torch.optim.Optimizer] = Registry("optimizer")
register_optimizer = optimizer_registry.register


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@register_optimizer("adam", "Adam (train.lr, train.weight_decay)")
def adam(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(_trainable(model), lr=cfg.lr, weight_decay=cfg.weight_decay)


@register_optimizer("sgd", "SGD with momentum (train.lr, train.momentum, train.weight_decay)")
def sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(_trainable(model), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


@register_optimizer("repopt", "RepOpt SGD: gradient multipliers from train.repopt_scales "
                              "(RepOpt-VGG / RepOpt-Ghost models only)")
def repopt(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    from avfed.models.repopt_models import RepOptConv2d
    from avfed.optim import build_repopt_optimizer

    if not any(isinstance(m, RepOptConv2d) for m in model.modules()):
        raise ConfigError(
            "invalid recipe field 'train.optimizer': repopt multiplies the gradients of "
            "RepOpt layers, and this model has none; use a repopt_* model (avfed models) "
            "or train.optimizer=sgd")
    return build_repopt_optimizer(model, cfg.repopt_scales, lr=cfg.lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return optimizer_registry.get(cfg.optimizer)(model, cfg)
