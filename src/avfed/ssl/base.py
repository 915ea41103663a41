"""The contract every SSL method meets, so the federated client can train any of them."""

from __future__ import annotations

import torch
from torch import nn


class SSLMethod(nn.Module):
    """A backbone plus the heads and loss of one self-supervised method.

    ``training_loss`` takes two augmented views and returns a scalar; ``embed`` returns
    the backbone features that evaluation (kNN, linear probe) uses. ``shared_prefixes``
    lists the state-dict prefixes sent to the server: everything by default, methods
    with local-only parts (a momentum target, say) narrow it.
    """

    shared_prefixes: tuple[str, ...] = ("",)

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def shared_state(self) -> dict[str, torch.Tensor]:
        """The tensors this method exchanges with the server."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if any(k.startswith(p) for p in self.shared_prefixes)
        }
