"""Small video backbones for clips ``[B, C, T, H, W]``: 3D-ResNet and R(2+1)D.

Both follow Tran et al. 2018 ("A Closer Look at Spatiotemporal Convolutions"): the
3D-ResNet uses full 3×3×3 kernels; R(2+1)D factorises each into a 1×3×3 spatial conv
and a 3×1×1 temporal conv with a BN + ReLU between them, which doubles the
non-linearities at matched parameter count. The intermediate width is chosen so the
pair has as many parameters as the 3-D kernel it replaces:

    M = ⌊ t·d²·N_in·N_out / (d²·N_in + t·N_out) ⌋

The stem has stride 1 in time and 2 in space; stages 2–4 halve time and space. With
``width`` as the first stage's channels the features are ``8·width`` wide; the ``_10``
variants (one block per stage) at small widths run on 8×32×32 clips on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from avfed.models.registry import register_model


def factorised_width(in_ch: int, out_ch: int, temporal: int, spatial: int) -> int:
    """Mid-channels M of a (2+1)D conv matching the parameters of a t×d×d 3-D conv."""
    full = temporal * spatial * spatial * in_ch * out_ch
    return max(1, full // (spatial * spatial * in_ch + temporal * out_ch))


# (in_ch, out_ch, stride) → the conv a residual block uses: 3×3×3, or (2+1)D.
ConvFactory = Callable[[int, int, int], nn.Module]


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: tuple[int, int, int],
                  stride: tuple[int, int, int]) -> list[nn.Module]:
    padding = tuple(k // 2 for k in kernel)
    return [nn.Conv3d(in_ch, out_ch, kernel, stride, padding, bias=False),
            nn.BatchNorm3d(out_ch), nn.ReLU(inplace=True)]


class Conv2Plus1d(nn.Sequential):
    """1×d×d spatial conv → BN → ReLU → t×1×1 temporal conv (no BN/ReLU after: the caller's)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, spatial: int = 3,
                 temporal: int = 3) -> None:
        mid = factorised_width(in_ch, out_ch, temporal, spatial)
        super().__init__(
            *_conv_bn_relu(in_ch, mid, (1, spatial, spatial), (1, stride, stride)),
            nn.Conv3d(mid, out_ch, (temporal, 1, 1), (stride, 1, 1), (temporal // 2, 0, 0),
                      bias=False),
        )


def _conv3d(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_ch, out_ch, 3, stride, 1, bias=False)


class BasicBlock3d(nn.Module):
    """Two convs (3-D or (2+1)D, given by ``conv``) with BN, identity or 1×1×1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, conv: ConvFactory) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv(in_ch, out_ch, stride), nn.BatchNorm3d(out_ch)
        self.conv2, self.bn2 = conv(out_ch, out_ch, 1), nn.BatchNorm3d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm3d(out_ch))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class VideoResNet(nn.Module):
    """Stem, four stages of :class:`BasicBlock3d`, global average pool → ``[B, 8·width]``."""

    def __init__(self, stem: nn.Module, conv: ConvFactory, depths: tuple[int, ...],
                 width: int) -> None:
        super().__init__()
        self.stem = stem
        stages: list[nn.Module] = []
        in_ch = width
        for i, depth in enumerate(depths):
            out_ch = width * 2**i
            blocks = [BasicBlock3d(in_ch, out_ch, 1 if i == 0 else 2, conv)]
            blocks += [BasicBlock3d(out_ch, out_ch, 1, conv) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = in_ch
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output ``[B, 8·width, T', H', W']``, before pooling: where
        things are, for heads that localise (a tracking pretext)."""
        if x.ndim != 5:
            raise ValueError(f"video backbones expect clips [B, C, T, H, W]; got shape "
                             f"{tuple(x.shape)}")
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.feature_map(x)), 1)


def _check(in_chans: int, width: int) -> None:
    if in_chans < 1 or width < 1:
        raise ValueError(f"in_chans and width must be >= 1; got {in_chans}, {width}")


def r3d(depths: tuple[int, ...], in_chans: int = 3, width: int = 64) -> VideoResNet:
    """3D-ResNet: 3×7×7 stem (stride 1×2×2) and 3×3×3 basic blocks."""
    _check(in_chans, width)
    stem = nn.Sequential(*_conv_bn_relu(in_chans, width, (3, 7, 7), (1, 2, 2)))
    return VideoResNet(stem, _conv3d, depths, width)


def r2plus1d(depths: tuple[int, ...], in_chans: int = 3, width: int = 64) -> VideoResNet:
    """R(2+1)D: the 3×7×7 stem and every 3×3×3 conv factorised into spatial + temporal."""
    _check(in_chans, width)
    mid = factorised_width(in_chans, width, 3, 7)
    stem = nn.Sequential(*_conv_bn_relu(in_chans, mid, (1, 7, 7), (1, 2, 2)),
                         *_conv_bn_relu(mid, width, (3, 1, 1), (1, 1, 1)))
    return VideoResNet(stem, Conv2Plus1d, depths, width)


@register_model("r3d_10", "3D-ResNet-10 (3×3×3 convs, one block per stage); args: width",
                video=True)
def r3d_10(in_chans: int = 3, width: int = 64) -> VideoResNet:
    return r3d((1, 1, 1, 1), in_chans, width)


@register_model("r3d_18", "3D-ResNet-18 (3×3×3 convs, two blocks per stage); args: width",
                video=True)
def r3d_18(in_chans: int = 3, width: int = 64) -> VideoResNet:
    return r3d((2, 2, 2, 2), in_chans, width)


@register_model("r2plus1d_10", "R(2+1)D-10 (1×3×3 + 3×1×1 convs, one block per stage); "
                "args: width", video=True)
def r2plus1d_10(in_chans: int = 3, width: int = 64) -> VideoResNet:
    return r2plus1d((1, 1, 1, 1), in_chans, width)


@register_model("r2plus1d_18", "R(2+1)D-18 (1×3×3 + 3×1×1 convs, two blocks per stage); "
                "args: width", video=True)
def r2plus1d_18(in_chans: int = 3, width: int = 64) -> VideoResNet:
    return r2plus1d((2, 2, 2, 2), in_chans, width)
