"""Self-supervised methods (loss + heads) by name; importing registers the built-ins."""

from avfed.registry import import_submodules
from avfed.ssl.base import SSLMethod
from avfed.ssl.registry import create, list_methods, method_registry, register_method

import_submodules(__name__, __path__)

__all__ = ["SSLMethod", "create", "list_methods", "method_registry", "register_method"]
