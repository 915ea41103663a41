"""The model registry: ``models.create("resnet18_cifar", in_chans=1)``.

Every registered backbone maps an input batch to pooled features ``[B, num_features]``
and exposes ``num_features`` so SSL heads can size themselves without a dry run.
Registration facts the run builder reads: ``multimodal=True`` (the factory takes
``modalities={name: channels}``, one stem each) and ``repopt=True`` (a RepOpt target,
initialised from ``train.repopt_scales`` and trainable with ``train.optimizer=repopt``).
"""

from __future__ import annotations

from torch import nn

from avfed.registry import Registry

# in_chans and modalities come from the data; scales from train.repopt_scales
model_registry: Registry[nn.Module] = Registry("model", injected=("in_chans", "modalities",
                                                                  "scales"))
register_model = model_registry.register


def create(name: str, **kwargs: object) -> nn.Module:
    return model_registry.create(name, **kwargs)


def list_models() -> dict[str, str]:
    return model_registry.describe()
