"""The contract every SSL method meets, so the federated client can train any of them."""

from __future__ import annotations

import torch
from torch import nn

from avfed.models.multimodal import MultiModalBackbone


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

    def after_step(self) -> None:
        """Called after every optimizer step: momentum encoders update here."""

    @torch.no_grad()
    def embed(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        """Backbone features of ``x`` (of ``modality`` for a multi-modal backbone)."""
        if modality is None or not isinstance(self.backbone, MultiModalBackbone):
            return self.backbone(x)
        return self.backbone({modality: x})

    def shared_state(self) -> dict[str, torch.Tensor]:
        """The tensors this method exchanges with the server."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if any(k.startswith(p) for p in self.shared_prefixes)
        }

    def load_shared_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what the server sent; it must be exactly the shared part of this model."""
        expected = set(self.shared_state())
        got = set(state)
        if got != expected:
            missing, extra = sorted(expected - got)[:3], sorted(got - expected)[:3]
            raise ValueError(
                f"global weights do not match {type(self).__name__}'s shared state "
                f"(missing {missing}, unexpected {extra}); were server and client built "
                "from the same recipe?"
            )
        self.load_state_dict(state, strict=False)
