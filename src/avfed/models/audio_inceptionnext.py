"""AudioInceptionNeXt (Lau et al., arXiv 2307.07265) and AudioRepInceptionNeXt (2404.13551).

Single-stream CNNs on log-mel spectrograms ``[B, 1, mels, frames]`` (frequency on the
height axis, time on the width axis). Both share a ResNet-like macro structure: a
5 (time) × 7 (frequency) stride-2 stem with max-pool, four stages of depths (3, 4, 6, 3)
at 64/128/256/512 channels with stride 2 from the second stage on, and a 4× MLP
(1×1 expand, 1×1 project) in every block. They differ in the token mixer:

- **AudioInceptionNeXt**: three parallel separable branches (time-kernel depth-wise conv
  then frequency-kernel depth-wise conv, each with BN + ReLU) of sizes 3, 11 and 21,
  summed — multi-scale context along both axes at depth-wise cost;
- **AudioRepInceptionNeXt**: a cascade of two multi-branch stages — parallel time-axis
  depth-wise convs (21, 11, 3) each with its own BN, then parallel frequency-axis ones —
  each with an identity shortcut and ReLU. At deploy time every multi-branch folds into
  one depth-wise conv (the largest kernel) with bias, which is what makes it faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfed.models.registry import register_model
from avfed.models.reparam import Reparameterizable, fold_bn, load_kernel, pad_kernel

BASE_DEPTHS = (3, 4, 6, 3)
BASE_WIDTHS = (64, 128, 256, 512)
KERNELS = (3, 11, 21)
MLP_RATIO = 4


def _axis_kernel(k: int, axis: str) -> tuple[int, int]:
    """A 1-D kernel along ``axis`` ("time" = width, "freq" = height) as (kh, kw)."""
    return (1, k) if axis == "time" else (k, 1)


def _dw_conv(channels: int, k: int, axis: str, bias: bool = False) -> nn.Conv2d:
    kh, kw = _axis_kernel(k, axis)
    return nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2),
                     groups=channels, bias=bias)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class SeparableBranch(nn.Sequential):
    """Time-axis DW k → BN → ReLU → frequency-axis DW k → BN → ReLU."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__(_dw_conv(channels, k, "time"), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), _dw_conv(channels, k, "freq"),
                         nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class InceptionMixer(nn.Module):
    """AudioInceptionNeXt's token mixer: the sum of the separable branches."""

    def __init__(self, channels: int, kernels: Sequence[int] = KERNELS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(SeparableBranch(channels, k) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)  # type: ignore[return-value]


class MultiKernelDW(Reparameterizable):
    """``ReLU(x + Σ_k BN_k(DW_k(x)))`` with 1-D depth-wise kernels along one axis.

    Training form: one conv + BN per kernel size. Deploy form: the BNs folded into their
    convs, the smaller kernels zero-padded (centred) to the largest and summed into one
    depth-wise conv with bias. The identity shortcut stays an explicit addition.
    """

    def __init__(self, channels: int, kernels: Sequence[int], axis: str) -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"kernel sizes must be odd to stay centred, got {tuple(kernels)}")
        self.channels, self.axis = channels, axis
        self.kernels = tuple(sorted(kernels, reverse=True))
        self.convs = nn.ModuleList(_dw_conv(channels, k, axis) for k in self.kernels)
        self.bns = nn.ModuleList(nn.BatchNorm2d(channels) for _ in self.kernels)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.relu(x + self.fused(x))
        mixed = sum(bn(conv(x)) for conv, bn in zip(self.convs, self.bns, strict=True))
        return F.relu(x + mixed)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the branches into ``fused``, in the branches' dtype and on their device.

        A no-op once folded, so calling it again (directly or through
        :func:`~avfed.models.reparam.reparameterize_model`) leaves the block unchanged.
        """
        if self.fused is not None:
            return
        size = _axis_kernel(self.kernels[0], self.axis)
        reference = self.convs[0].weight
        weight = reference.new_zeros(self.channels, 1, *size)
        bias = reference.new_zeros(self.channels)
        for conv, bn in zip(self.convs, self.bns, strict=True):
            w, b = fold_bn(conv.weight, conv.bias, bn)
            weight += pad_kernel(w, size)
            bias += b
        self.fused = load_kernel(_dw_conv(self.channels, self.kernels[0], self.axis, bias=True),
                                 weight, bias)
        del self.convs, self.bns
        self.deployed = True


class RepInceptionMixer(nn.Sequential):
    """AudioRepInceptionNeXt's mixer: time multi-branch, then frequency multi-branch."""

    def __init__(self, channels: int, kernels: Sequence[int] = KERNELS) -> None:
        super().__init__(MultiKernelDW(channels, kernels, "time"),
                         MultiKernelDW(channels, kernels, "freq"))


class AudioBlock(nn.Module):
    """1×1 (stride) → mixer → 1×1 expand ×4 → 1×1 project, outer residual, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, rep: bool,
                 kernels: Sequence[int]) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))
        if rep:  # the Rep block activates before its mixer; the original does not
            self.reduce.append(nn.ReLU(inplace=True))
        self.mixer = RepInceptionMixer(cout, kernels) if rep else InceptionMixer(cout, kernels)
        hidden = cout * MLP_RATIO
        self.mlp = nn.Sequential(nn.Conv2d(cout, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                 *([nn.ReLU(inplace=True)] if rep else []),
                                 nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = _conv_bn(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mlp(self.mixer(self.reduce(x))) + self.shortcut(x))


class AudioInceptionNeXt(nn.Module):
    """The shared macro structure; ``rep`` picks the AudioRepInceptionNeXt block."""

    def __init__(self, rep: bool, in_chans: int = 1, depths: Sequence[int] = BASE_DEPTHS,
                 widths: Sequence[int] = BASE_WIDTHS, kernels: Sequence[int] = KERNELS) -> None:
        super().__init__()
        if len(depths) != len(widths) or not depths or min(depths) < 1 or min(widths) < 1:
            raise ValueError(f"depths and widths must be equally long lists of positive "
                             f"ints, got {tuple(depths)} and {tuple(widths)}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], (7, 5), 2, (3, 2), bias=False),  # 7 freq × 5 time
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin = widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            blocks = [AudioBlock(cin if b == 0 else width, width,
                                 2 if (i > 0 and b == 0) else 1, rep, kernels)
                      for b in range(depth)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.num_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a log-mel batch [B, C, mels, frames], got shape "
                             f"{tuple(x.shape)}")
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def _widths(width: int) -> tuple[int, ...]:
    return tuple(width * m for m in (1, 2, 4, 8))


@register_model("audio_inceptionnext", "AudioInceptionNeXt: multi-scale separable DW "
                "(3/11/21) blocks on log-mels, depths 3-4-6-3; args: width=64, depths")
def audio_inceptionnext(in_chans: int = 1, width: int = 64,
                        depths: Sequence[int] = BASE_DEPTHS) -> AudioInceptionNeXt:
    return AudioInceptionNeXt(False, in_chans, depths, _widths(width))


@register_model("audio_inceptionnext_tiny", "AudioInceptionNeXt at width 16, one block "
                "per stage (tests, built-in data); args: width, depths")
def audio_inceptionnext_tiny(in_chans: int = 1, width: int = 16,
                             depths: Sequence[int] = (1, 1, 1, 1)) -> AudioInceptionNeXt:
    return AudioInceptionNeXt(False, in_chans, depths, _widths(width))


@register_model("audio_rep_inceptionnext", "AudioRepInceptionNeXt: time then frequency "
                "multi-branch DW (21/11/3), re-parameterizable; args: width=64, depths")
def audio_rep_inceptionnext(in_chans: int = 1, width: int = 64,
                            depths: Sequence[int] = BASE_DEPTHS) -> AudioInceptionNeXt:
    return AudioInceptionNeXt(True, in_chans, depths, _widths(width))


@register_model("audio_rep_inceptionnext_tiny", "AudioRepInceptionNeXt at width 16, one "
                "block per stage (tests, built-in data); args: width, depths")
def audio_rep_inceptionnext_tiny(in_chans: int = 1, width: int = 16,
                                 depths: Sequence[int] = (1, 1, 1, 1)) -> AudioInceptionNeXt:
    return AudioInceptionNeXt(True, in_chans, depths, _widths(width))
