"""Backbones by name. Importing this package registers every built-in model."""

from avfed.models.registry import create, list_models, model_registry, register_model
from avfed.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["create", "list_models", "model_registry", "register_model"]
