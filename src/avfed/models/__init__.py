"""Backbones by name. Importing this package registers every built-in model."""

from avfed.models import resnet as _resnet  # noqa: F401  (registers models)
from avfed.models.registry import create, list_models, model_registry, register_model

__all__ = ["create", "list_models", "model_registry", "register_model"]
