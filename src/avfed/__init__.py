"""avfed: federated, self-supervised audio-visual learning on edge-efficient models."""

__version__ = "0.1.0"
