"""Self-supervised methods (loss + heads) by name; importing registers the built-ins."""

from avfed.ssl import simclr as _simclr  # noqa: F401  (registers methods)
from avfed.ssl.base import SSLMethod
from avfed.ssl.registry import create, list_methods, method_registry, register_method

__all__ = ["SSLMethod", "create", "list_methods", "method_registry", "register_method"]
