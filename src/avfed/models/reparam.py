"""Structural re-parameterization: the maths every train → deploy conversion shares.

A re-parameterizable module keeps its training form (several branches, each conv
followed by BatchNorm) until :func:`reparameterize_model` asks it to fold itself into
one convolution that computes the same function in eval mode. Modules opt in by
subclassing :class:`Reparameterizable`; the helpers below are the two identities all
of them rely on (BN folding and centred zero-padding of smaller kernels), kept here
so each model family does not re-derive them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Reparameterizable(nn.Module):
    """A block with a multi-branch training form and a single-branch deploy form.

    Subclasses implement :meth:`reparameterize`, which replaces their branches in place
    with one fused operator and sets ``deployed``. Calling it twice is harmless.
    """

    deployed: bool = False

    def reparameterize(self) -> None:
        raise NotImplementedError


def reparameterize_model(model: nn.Module) -> nn.Module:
    """Switch every re-parameterizable block of ``model`` to its deploy form, in place.

    BN statistics are frozen into the fused weights, so the model is put in eval mode
    first; the result is meant for inference or export, not further training.
    """
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, Reparameterizable) and not module.deployed:
            module.reparameterize()
            module.deployed = True
    return model


def remaining_branches(model: nn.Module) -> list[str]:
    """Names of re-parameterizable blocks still in training form (empty once deployed)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, Reparameterizable) and not module.deployed
    ]


@torch.no_grad()
def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d | nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the conv before it.

    ``BN(W * x + b) = (γ/σ) W * x + (β + (b − μ) γ/σ)`` with ``σ = sqrt(var + eps)``;
    the per-output-channel scale multiplies the weight along dim 0.
    """
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    conv_bias = bias if bias is not None else torch.zeros_like(std)
    fused_w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    fused_b = beta + (conv_bias - bn.running_mean) * scale
    return fused_w, fused_b


def pad_kernel(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad a ``[..., kh, kw]`` kernel to ``size``, keeping it centred.

    A centred smaller kernel with proportionally smaller padding computes the same
    output as the padded one, which is why parallel branches of different kernel sizes
    (and stride 1) can be summed into one conv. Size differences must be even.
    """
    dh, dw = size[0] - kernel.shape[-2], size[1] - kernel.shape[-1]
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ValueError(f"cannot centre a {tuple(kernel.shape[-2:])} kernel in {size}")
    return F.pad(kernel, (dw // 2, dw // 2, dh // 2, dh // 2))


@torch.no_grad()
def load_kernel(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """``conv`` (built with a bias) holding a merged ``weight`` and ``bias``, on their device
    and dtype: the last step of every ``reparameterize()``."""
    conv = conv.to(weight)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


def identity_kernel(channels: int, groups: int, size: tuple[int, int]) -> torch.Tensor:
    """The conv kernel of shape ``[channels, channels // groups, kh, kw]`` that maps x → x."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, *size)
    centre_h, centre_w = size[0] // 2, size[1] // 2
    for c in range(channels):
        kernel[c, c % per_group, centre_h, centre_w] = 1.0
    return kernel


def randomize_bn_stats(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms.

    Fresh BNs have mean 0, var 1, γ 1, β 0, under which a wrong fold can still pass an
    equivalence check; tests and benchmarks call this first.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.5)
