"""SimCLR (Chen et al., 2020): contrast two views of each image against the batch."""

from __future__ import annotations

import torch
from torch import nn

from avfed.ssl.base import SSLMethod
from avfed.ssl.heads import mlp_projector
from avfed.ssl.losses import nt_xent
from avfed.ssl.momentum import check_flag, shared_prefixes_for
from avfed.ssl.registry import register_method


class SimCLR(SSLMethod):
    """Shared with the server: backbone and projector (no client-only state).

    ``share_heads=False`` sends the backbone alone and keeps the projector on the
    client, the backbone-only transmission FASSL compares with sending the whole model.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.5,
        share_heads: bool = True,
    ) -> None:
        super().__init__(backbone)
        if temperature <= 0:
            raise ValueError(f"ssl.args.temperature must be > 0, got {temperature}")
        self.projector = mlp_projector(backbone.num_features, hidden_dim, projection_dim)
        self.temperature = temperature
        self.shared_prefixes = shared_prefixes_for(
            ("projector.",), check_flag("share_heads", share_heads))

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        return nt_xent(z1, z2, self.temperature)


@register_method("simclr", "SimCLR: NT-Xent over two views, 2-layer projector")
def simclr(backbone: nn.Module, **kwargs: object) -> SimCLR:
    return SimCLR(backbone, **kwargs)  # type: ignore[arg-type]
