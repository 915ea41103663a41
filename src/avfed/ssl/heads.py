"""Projection heads mapping backbone features into the space the SSL loss works in."""

from __future__ import annotations

from torch import nn


def mlp_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """SimCLR's 2-layer head (Linear-BN-ReLU-Linear); features before it are evaluated."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


def mlp_predictor(in_dim: int, hidden_dim: int, out_dim: int | None = None) -> nn.Sequential:
    """The predictor of BYOL and SimSiam: Linear-BN-ReLU-Linear, output as wide as input.

    It has the projector's 2-layer shape (BYOL uses the same widths for both); SimSiam
    narrows ``hidden_dim`` to a bottleneck, a quarter of the output width in its paper
    (2048 → 512 → 2048).
    """
    return mlp_projector(in_dim, hidden_dim, in_dim if out_dim is None else out_dim)


def _three_layer_mlp(in_dim: int, hidden_dim: int, out_dim: int,
                     output_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim, bias=False),
    ]
    if output_norm:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def simsiam_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """SimSiam's 3-layer projector, ending in a BN without affine parameters.

    The output BN keeps every projected dimension at unit scale (its paper's ablation
    finds a small gain from it); it has no learned shift and scale, which would only
    duplicate the predictor's first layer.
    """
    return _three_layer_mlp(in_dim, hidden_dim, out_dim, output_norm=True)


def barlow_twins_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Barlow Twins' 3-layer projector (two Linear-BN-ReLU, then a bare Linear).

    No output normalisation: the loss standardises each dimension over the batch itself.
    """
    return _three_layer_mlp(in_dim, hidden_dim, out_dim, output_norm=False)


def moco_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """MoCo v2's MLP head (Linear-ReLU-Linear, no batch norm), the v2 change to MoCo."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
