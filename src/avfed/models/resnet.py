"""CIFAR-style ResNets: 3×3 stride-1 stem and no max-pool.

On 32×32 inputs the ImageNet stem (7×7 stride 2 + max-pool) throws away three
quarters of the pixels before the first block and costs several points of kNN accuracy,
so SSL work on small images uses this variant.
"""

from __future__ import annotations

import torch
from torch import nn

from avfed.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class FrequencyTimePool(nn.Module):
    """Keeps the frequency axis and summarises time, for log-mel inputs ``[B, C, F, T]``.

    A global average pool mixes every band into one number per channel, so a word's
    formant pattern (which band is loud, which is not) survives only as far as the
    channels happen to encode it. Here the bands are averaged down to ``freq_bins`` and
    each is kept, and time is summarised by its mean and its max (BYOL-A's pooling), so
    where the word lies in the window does not matter but its spectrum does:
    ``channels × freq_bins × 2`` features.
    """

    def __init__(self, freq_bins: int = 4) -> None:
        super().__init__()
        if freq_bins < 1:
            raise ValueError(f"freq_bins must be >= 1, got {freq_bins}")
        self.freq_bins = freq_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"FrequencyTimePool expects [B, C, F, T], got {tuple(x.shape)}")
        bands = nn.functional.adaptive_avg_pool2d(x, (self.freq_bins, x.shape[-1]))
        return torch.cat([bands.mean(dim=-1), bands.amax(dim=-1)], dim=1).flatten(1)


POOLS = ("avg", "frequency")


class CifarResNet(nn.Module):
    """ResNet with BasicBlocks; ``width`` is the first stage's channels (64 in the paper).

    ``pool="avg"`` is the usual global average; ``pool="frequency"`` keeps ``freq_bins``
    bands of a spectrogram input (:class:`FrequencyTimePool`).
    """

    def __init__(self, depths: tuple[int, ...], in_chans: int = 3, width: int = 64,
                 pool: str = "avg", freq_bins: int = 4) -> None:
        super().__init__()
        if in_chans < 1 or width < 1:
            raise ValueError(f"in_chans and width must be >= 1, got {in_chans}, {width}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_ch = width
        for i, depth in enumerate(depths):
            out_ch = width * 2**i
            blocks = [BasicBlock(in_ch, out_ch, 1 if i == 0 else 2)]
            blocks += [BasicBlock(out_ch, out_ch, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool: nn.Module
        if pool == "frequency":
            self.pool = FrequencyTimePool(freq_bins)
            self.num_features = in_ch * freq_bins * 2
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.num_features = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


@register_model("resnet18_cifar",
                "ResNet-18, CIFAR stem (3×3 s1, no max-pool); args: width, pool, freq_bins")
def resnet18_cifar(in_chans: int = 3, width: int = 64, pool: str = "avg",
                   freq_bins: int = 4) -> CifarResNet:
    return CifarResNet((2, 2, 2, 2), in_chans, width, pool, freq_bins)


@register_model("resnet10_cifar",
                "ResNet-10 (one block per stage), CIFAR stem; args: width, pool, freq_bins")
def resnet10_cifar(in_chans: int = 3, width: int = 64, pool: str = "avg",
                   freq_bins: int = 4) -> CifarResNet:
    return CifarResNet((1, 1, 1, 1), in_chans, width, pool, freq_bins)
