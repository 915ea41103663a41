"""BYOL (Grill et al., 2020): predict a slow-moving target's projection of the other view.

The momentum target itself lives in :mod:`avfed.ssl.momentum` (MoCo shares it).
"""

from __future__ import annotations

import torch
from torch import nn

from avfed.ssl.heads import mlp_predictor, mlp_projector
from avfed.ssl.losses import normalized_mse
from avfed.ssl.momentum import (
    MomentumTarget,
    MomentumTargetMethod,
    check_flag,
    shared_prefixes_for,
)
from avfed.ssl.registry import register_method


class BYOL(MomentumTargetMethod):
    """BYOL: an online backbone, projector and predictor regress a momentum target.

    Loss (paper): ``‖q̂₁ − ẑ′₂‖² + ‖q̂₂ − ẑ′₁‖²`` with L2-normalised predictions ``q``
    and target projections ``z′``, i.e. ``2 − 2·cos`` per direction, summed over both
    directions (so in [0, 8]). The target (backbone + projector) takes no gradient and
    moves by EMA in ``after_step`` with momentum ``momentum`` (0.99, the CIFAR value
    of FedU/FedEMA's public code; the paper's ImageNet value is 0.996), optionally on the
    paper's cosine schedule to 1 over ``momentum_schedule_steps`` steps (0 = constant;
    in federated runs that is rounds × local steps, counted per client).

    Shared with the server: the online backbone, projector and predictor
    (``share_heads=False``: the backbone alone). The EMA target is kept local and
    carried across rounds by default (``target_from_global=False``), as FedU and FedEMA
    do (public code EasyFL ``applications/fedssl``): a client's first round builds it
    from the global online weights, later rounds keep it, so the target holds that
    client's own slow average and the global model cannot jerk it. Set
    ``target_from_global=True`` to rebuild it from the received online weights every
    round, the stateless choice.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        momentum: float = 0.99,
        momentum_schedule_steps: int = 0,
        target_from_global: bool = False,
        share_heads: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.projector = mlp_projector(backbone.num_features, hidden_dim, projection_dim)
        self.predictor = mlp_predictor(projection_dim, hidden_dim)
        self.target = MomentumTarget(self.online_modules(), momentum, momentum_schedule_steps)
        self.target_from_global = check_flag("target_from_global", target_from_global)
        self.shared_prefixes = shared_prefixes_for(
            ("projector.", "predictor."), check_flag("share_heads", share_heads))

    def online_modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "projector": self.projector}

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        p1 = self.predictor(self.projector(self.backbone(view1)))
        p2 = self.predictor(self.projector(self.backbone(view2)))
        with torch.no_grad():
            t1, t2 = self.target(view1), self.target(view2)
        return normalized_mse(p1, t2) + normalized_mse(p2, t1)


@register_method("byol", "BYOL: online predictor regresses an EMA target; symmetric 2 − 2cos")
def byol(backbone: nn.Module, **kwargs: object) -> BYOL:
    return BYOL(backbone, **kwargs)  # type: ignore[arg-type]
