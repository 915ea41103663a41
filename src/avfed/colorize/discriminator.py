"""VCGAN's discriminator: a PatchGAN with spectral normalisation.

It judges (grayscale, colour) pairs, so a colouring is scored against the frame it
colours, and answers per overlapping patch (70×70 pixels at the paper's depth) rather
than per image: colour realism is local. Spectral norm on every convolution keeps the
critic Lipschitz, which is what lets the reference scripts train it with the plain
Wasserstein loss and no gradient penalty (the hinge loss, as SAGAN, is the steadier choice
at small budgets). Self-attention follows the fourth block.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from avfed.colorize.generator import SelfAttention


def _sn_conv(cin: int, cout: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1))


def _sn_attention(channels: int) -> SelfAttention:
    """Self-attention whose projections are spectrally normalised too (as in SAGAN's
    discriminator); unnormalised, they let the critic's scores grow without bound."""
    block = SelfAttention(channels)
    for name in ("query", "key", "value"):
        setattr(block, name, spectral_norm(getattr(block, name)))
    return block


class PatchDiscriminator(nn.Module):
    """Scores ``[B, 3, H, W]`` colour frames given their ``[B, 1, H, W]`` luminance."""

    def __init__(self, base: int = 16, attention: bool = True) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.2, inplace=True)
        self.body = nn.Sequential(
            _sn_conv(4, base, 2), act,
            _sn_conv(base, 2 * base, 2), act,
            _sn_conv(2 * base, 4 * base, 2), act,
            _sn_conv(4 * base, 8 * base, 1), act,
            _sn_attention(8 * base) if attention else nn.Identity(),
            _sn_conv(8 * base, 1, 1),
        )

    def forward(self, gray: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([gray * 2.0 - 1.0, rgb * 2.0 - 1.0], dim=1))
