"""The model registry: ``models.create("resnet18_cifar", in_chans=1)``.

Every registered backbone maps an input batch to pooled features ``[B, num_features]``
and exposes ``num_features`` so SSL heads can size themselves without a dry run.
"""

from __future__ import annotations

from torch import nn

from avfed.registry import Registry

model_registry: Registry[nn.Module] = Registry("model")
register_model = model_registry.register


def create(name: str, **kwargs: object) -> nn.Module:
    return model_registry.create(name, **kwargs)


def list_models() -> dict[str, str]:
    return model_registry.describe()
