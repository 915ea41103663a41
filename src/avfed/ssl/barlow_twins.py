"""Barlow Twins (Zbontar et al., 2021): make the two views' cross-correlation the identity."""

from __future__ import annotations

import torch
from torch import nn

from avfed.ssl.base import SSLMethod
from avfed.ssl.heads import barlow_twins_projector
from avfed.ssl.losses import barlow_twins_loss
from avfed.ssl.momentum import check_flag, shared_prefixes_for
from avfed.ssl.registry import register_method


class BarlowTwins(SSLMethod):
    """Barlow Twins: invariance on the diagonal of ``C``, redundancy reduction off it.

    Loss (paper): ``Σ_i (1 − C_ii)² + λ·Σ_{i≠j} C_ij²`` over the batch cross-correlation
    ``C`` of the two views' projections, each dimension standardised over the batch;
    ``lambda_offdiag`` = 5e-3 is the paper's λ (its public script uses 0.0051). Heads:
    the 3-layer projector (8192 wide in the paper; here ``hidden_dim`` and
    ``projection_dim``). Needs no negatives, no momentum target and no predictor, so it
    works at the small batch sizes clients afford, though ``C`` is estimated from the
    batch and gets noisy when the batch is much smaller than ``projection_dim``.

    Shared with the server: everything (backbone and projector): the method keeps no
    client-only state. ``share_heads=False`` sends the backbone alone, the
    backbone-only transmission FASSL compares with sending the whole model.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        lambda_offdiag: float = 5e-3,
        share_heads: bool = True,
    ) -> None:
        super().__init__(backbone)
        if lambda_offdiag < 0:
            raise ValueError(f"ssl.args.lambda_offdiag must be >= 0, got {lambda_offdiag}")
        self.lambda_offdiag = lambda_offdiag
        self.projector = barlow_twins_projector(backbone.num_features, hidden_dim,
                                                projection_dim)
        self.shared_prefixes = shared_prefixes_for(
            ("projector.",), check_flag("share_heads", share_heads))

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        return barlow_twins_loss(z1, z2, self.lambda_offdiag)


@register_method("barlow_twins", "Barlow Twins: cross-correlation of two views towards identity")
def barlow_twins(backbone: nn.Module, **kwargs: object) -> BarlowTwins:
    return BarlowTwins(backbone, **kwargs)  # type: ignore[arg-type]
