"""SSL methods by name: ``ssl.create("simclr", backbone, temperature=0.2)``."""

from __future__ import annotations

from torch import nn

from avfed.registry import Registry
from avfed.ssl.base import SSLMethod

# the backbone is built from model.*, the head sizes come from ssl.* fields
method_registry: Registry[SSLMethod] = Registry(
    "SSL method", injected=("backbone", "projection_dim", "hidden_dim"))
register_method = method_registry.register


def create(name: str, backbone: nn.Module, **kwargs: object) -> SSLMethod:
    return method_registry.create(name, backbone, **kwargs)


def list_methods() -> dict[str, str]:
    return method_registry.describe()
