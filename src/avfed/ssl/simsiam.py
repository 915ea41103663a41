"""SimSiam (Chen & He, 2021): BYOL without a momentum target, held up by a stop-gradient."""

from __future__ import annotations

import torch
from torch import nn

from avfed.ssl.base import SSLMethod
from avfed.ssl.heads import mlp_predictor, simsiam_projector
from avfed.ssl.losses import negative_cosine
from avfed.ssl.momentum import check_flag, shared_prefixes_for
from avfed.ssl.registry import register_method


class SimSiam(SSLMethod):
    """SimSiam: one network; the predictor of each view regresses the other's projection.

    Loss (paper): ``½·D(p₁, sg(z₂)) + ½·D(p₂, sg(z₁))`` with ``D = −cos``, so in
    [−1, 1]; ``sg`` (stop-gradient) makes the projection of the other view a fixed
    target, the part the paper shows is needed to avoid collapse. Heads: the 3-layer
    projector with a non-affine BN on its output, and a 2-layer predictor whose hidden
    width ``predictor_hidden_dim`` defaults to a quarter of ``projection_dim`` (the
    paper's 2048 → 512 → 2048 bottleneck).

    Shared with the server: everything (backbone, projector, predictor), as in
    FedU/FedEMA's FedSimSiam. There is no momentum target and no other client-only
    state, so nothing is lost by sending it all. ``share_heads=False`` sends the
    backbone alone and keeps both heads on the client.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        predictor_hidden_dim: int | None = None,
        share_heads: bool = True,
    ) -> None:
        super().__init__(backbone)
        if predictor_hidden_dim is None:
            predictor_hidden_dim = max(1, projection_dim // 4)
        if isinstance(predictor_hidden_dim, bool) or not isinstance(predictor_hidden_dim, int) \
                or predictor_hidden_dim < 1:
            raise ValueError("ssl.args.predictor_hidden_dim must be an integer >= 1 "
                             f"(or null for projection_dim // 4), got {predictor_hidden_dim!r}")
        self.projector = simsiam_projector(backbone.num_features, hidden_dim, projection_dim)
        self.predictor = mlp_predictor(projection_dim, predictor_hidden_dim)
        self.shared_prefixes = shared_prefixes_for(
            ("projector.", "predictor."), check_flag("share_heads", share_heads))

    @staticmethod
    def symmetric_loss(p1: torch.Tensor, p2: torch.Tensor,
                       z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The paper's symmetrised loss; the projections enter as constants."""
        return 0.5 * (negative_cosine(p1, z2.detach()) + negative_cosine(p2, z1.detach()))

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        return self.symmetric_loss(self.predictor(z1), self.predictor(z2), z1, z2)


@register_method("simsiam", "SimSiam: predictor regresses the other view with a stop-gradient")
def simsiam(backbone: nn.Module, **kwargs: object) -> SimSiam:
    return SimSiam(backbone, **kwargs)  # type: ignore[arg-type]
