"""Visual Attention Network (VAN) with a pluggable large-kernel spatial attention.

VAN replaces self-attention with a gating map computed by depth-wise convolutions whose
receptive field is large (23×23 in the released models) but whose cost is linear in the
number of pixels. Two ways of building that map are provided:

- :class:`LKA` (Large Kernel Attention, VAN): a square depth-wise conv followed by a
  square *dilated* depth-wise conv and a 1×1 conv. Its depth-wise parameters grow with
  the square of the kernel length.
- :class:`LSKA` (Large Separable Kernel Attention): the same two depth-wise convs, each
  split into a horizontal 1×n and a vertical n×1 conv, so parameters and MACs grow
  linearly in the kernel length while the receptive field stays the same.

Both return ``x ⊙ attn`` with no sigmoid. The backbone maps ``[B, C, H, W]`` to pooled
features ``[B, num_features]`` and works from 32×32 inputs (the built-in digits: the
final stage is then 1×1) up to 224×224.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from avfed.models.registry import register_model

ATTENTIONS = ("lka", "lska")


@dataclass(frozen=True)
class KernelSplit:
    """How an effective k×k kernel is decomposed into a plain and a dilated depth-wise conv.

    The receptive field of the pair is ``plain + (dilated - 1) * dilation == k``.
    """

    plain: int
    dilated: int
    dilation: int

    @property
    def effective(self) -> int:
        return self.plain + (self.dilated - 1) * self.dilation


# Effective kernel k → (plain DW length 2d−1, dilated DW length, dilation d), as released
# with LSKA (arXiv 2309.01439). The dilated length is (k + 1) / d − 1, which makes the
# receptive field exactly k; k = 23 reproduces VAN's LKA (5×5, then 7×7 with dilation 3).
KERNEL_SPLITS: dict[int, KernelSplit] = {
    7: KernelSplit(3, 3, 2),
    11: KernelSplit(3, 5, 2),
    23: KernelSplit(5, 7, 3),
    35: KernelSplit(5, 11, 3),
    41: KernelSplit(5, 13, 3),
    53: KernelSplit(5, 17, 3),
}


def kernel_split(kernel_size: int) -> KernelSplit:
    """The decomposition of an effective ``kernel_size``; unsupported sizes raise."""
    if kernel_size not in KERNEL_SPLITS:
        valid = ", ".join(str(k) for k in KERNEL_SPLITS)
        raise ValueError(f"kernel_size must be one of {valid}; got {kernel_size!r}")
    return KERNEL_SPLITS[kernel_size]


def _depthwise(channels: int, size: tuple[int, int], dilation: int = 1) -> nn.Conv2d:
    """A 'same'-padded depth-wise conv (odd kernel sizes keep the map's size)."""
    padding = ((size[0] - 1) * dilation // 2, (size[1] - 1) * dilation // 2)
    return nn.Conv2d(channels, channels, size, padding=padding, dilation=dilation,
                     groups=channels)


class LKA(nn.Module):
    """Large Kernel Attention: DW (2d−1)² → DW k'² dilation d → 1×1; ``out = x ⊙ attn``.

    ``kernel_size=23`` is VAN's module (5×5, 7×7 dilation 3). Other sizes follow VAN's
    decomposition rule with the dilation of :data:`KERNEL_SPLITS`, so that LKA and LSKA
    at the same ``kernel_size`` see exactly the same window and differ only in how the
    depth-wise kernels are factorised.
    """

    def __init__(self, channels: int, kernel_size: int = 23) -> None:
        super().__init__()
        split = kernel_split(kernel_size)
        self.kernel_size = kernel_size
        self.conv_plain = _depthwise(channels, (split.plain, split.plain))
        self.conv_dilated = _depthwise(channels, (split.dilated, split.dilated), split.dilation)
        self.conv_mix = nn.Conv2d(channels, channels, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_mix(self.conv_dilated(self.conv_plain(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


class LSKA(nn.Module):
    """Large Separable Kernel Attention: LKA's two depth-wise convs split into 1×n, n×1 pairs.

    1×(2d−1) → (2d−1)×1 → 1×k' dil d → k'×1 dil d → 1×1, ``out = x ⊙ attn``. A k×k
    window costs ``2(2d−1) + 2k'`` weights per channel instead of ``(2d−1)² + k'²``.
    """

    def __init__(self, channels: int, kernel_size: int = 23) -> None:
        super().__init__()
        split = kernel_split(kernel_size)
        self.kernel_size = kernel_size
        self.conv_plain_h = _depthwise(channels, (1, split.plain))
        self.conv_plain_v = _depthwise(channels, (split.plain, 1))
        self.conv_dilated_h = _depthwise(channels, (1, split.dilated), split.dilation)
        self.conv_dilated_v = _depthwise(channels, (split.dilated, 1), split.dilation)
        self.conv_mix = nn.Conv2d(channels, channels, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.conv_plain_v(self.conv_plain_h(x))
        attn = self.conv_dilated_v(self.conv_dilated_h(attn))
        return self.conv_mix(attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


def check_attention(attention: str, kernel_size: int) -> None:
    """Raise on an unknown attention name or an unsupported effective kernel size."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
    kernel_split(kernel_size)


def build_spatial_attention(attention: str, channels: int, kernel_size: int) -> nn.Module:
    """``"lka"`` or ``"lska"`` at an effective ``kernel_size``; anything else raises."""
    check_attention(attention, kernel_size)
    return LKA(channels, kernel_size) if attention == "lka" else LSKA(channels, kernel_size)


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch for a random subset of samples.

    Surviving samples are scaled by ``1 / (1 − p)`` so the expected output is unchanged,
    which is why evaluation can use the branch as is.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path must be in [0, 1); got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class AttentionUnit(nn.Module):
    """1×1 → GELU → LKA/LSKA → 1×1, plus a shortcut: VAN's replacement for self-attention."""

    def __init__(self, channels: int, attention: str, kernel_size: int) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.act = nn.GELU()
        self.spatial = build_spatial_attention(attention, channels, kernel_size)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.spatial(self.act(self.proj_in(x))))


class ConvMlp(nn.Module):
    """1×1 expand → 3×3 depth-wise → GELU → 1×1: the MLP with a little local mixing."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class VANBlock(nn.Module):
    """BN → attention and BN → MLP residual branches, each scaled per channel.

    Layer scale starts at 1e-2 so every block begins close to the identity, which keeps
    early training of the deeper variants stable.
    """

    def __init__(self, channels: int, mlp_ratio: float, attention: str, kernel_size: int,
                 drop_path: float = 0.0, layer_scale: float = 1e-2) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.attn = AttentionUnit(channels, attention, kernel_size)
        self.norm2 = nn.BatchNorm2d(channels)
        self.mlp = ConvMlp(channels, int(channels * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((channels, 1, 1), layer_scale))
        self.layer_scale_2 = nn.Parameter(torch.full((channels, 1, 1), layer_scale))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows (kernel > stride), then BN: the downsampler."""

    def __init__(self, in_chans: int, channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, channels, kernel, stride, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (each pixel as a token)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class VANStage(nn.Module):
    def __init__(self, embed: OverlapPatchEmbed, blocks: list[VANBlock], channels: int) -> None:
        super().__init__()
        self.embed = embed
        self.blocks = nn.Sequential(*blocks)
        self.norm = ChannelLayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.embed(x)))


class VAN(nn.Module):
    """Four stages (7×7 s4 embed, then 3×3 s2 embeds), mean-pooled to ``[B, widths[-1]]``."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...],
                 mlp_ratios: tuple[float, ...], in_chans: int = 3, attention: str = "lka",
                 kernel_size: int = 23, drop_path: float = 0.0) -> None:
        super().__init__()
        if not len(widths) == len(depths) == len(mlp_ratios) or not widths:
            raise ValueError("widths, depths and mlp_ratios must be non-empty and equally long; "
                             f"got {widths}, {depths}, {mlp_ratios}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1; got {in_chans}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1); got {drop_path}")
        check_attention(attention, kernel_size)
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        stages: list[nn.Module] = []
        in_ch, block_index = in_chans, 0
        for i, (width, depth, ratio) in enumerate(zip(widths, depths, mlp_ratios, strict=True)):
            embed = OverlapPatchEmbed(in_ch, width, 7 if i == 0 else 3, 4 if i == 0 else 2)
            blocks = [VANBlock(width, ratio, attention, kernel_size, rates[block_index + j])
                      for j in range(depth)]
            stages.append(VANStage(embed, blocks, width))
            in_ch, block_index = width, block_index + depth
        self.stages = nn.Sequential(*stages)
        self.attention = attention
        self.kernel_size = kernel_size
        self.num_features = widths[-1]
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"VAN expects an image batch [B, C, H, W]; got shape {tuple(x.shape)}")
        return self.stages(x).mean(dim=(2, 3))


def _init_weights(module: nn.Module) -> None:
    """Fan-out normal init for convs (as VAN): depth-wise kernels get a fan-out of k² only."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_VAN_ARGS = "args: attention ('lka'|'lska'), kernel_size (7/11/23/35/41/53), drop_path"


@register_model("van_nano", f"VAN test size, widths 8/16/32/64, depths 1,1,1,1; {_VAN_ARGS}")
def van_nano(in_chans: int = 3, attention: str = "lka", kernel_size: int = 23,
             drop_path: float = 0.0) -> VAN:
    return VAN((8, 16, 32, 64), (1, 1, 1, 1), (8, 8, 4, 4), in_chans, attention, kernel_size,
               drop_path)


@register_model("van_tiny", f"VAN-Tiny, widths 32/64/160/256, depths 3,3,5,2; {_VAN_ARGS}")
def van_tiny(in_chans: int = 3, attention: str = "lka", kernel_size: int = 23,
             drop_path: float = 0.0) -> VAN:
    return VAN((32, 64, 160, 256), (3, 3, 5, 2), (8, 8, 4, 4), in_chans, attention, kernel_size,
               drop_path)


@register_model("van_small", f"VAN-Small, widths 64/128/320/512, depths 2,2,4,2; {_VAN_ARGS}")
def van_small(in_chans: int = 3, attention: str = "lka", kernel_size: int = 23,
              drop_path: float = 0.0) -> VAN:
    return VAN((64, 128, 320, 512), (2, 2, 4, 2), (8, 8, 4, 4), in_chans, attention,
               kernel_size, drop_path)


@register_model("van_base", f"VAN-Base, widths 64/128/320/512, depths 3,3,12,3; {_VAN_ARGS}")
def van_base(in_chans: int = 3, attention: str = "lka", kernel_size: int = 23,
             drop_path: float = 0.0) -> VAN:
    return VAN((64, 128, 320, 512), (3, 3, 12, 3), (8, 8, 4, 4), in_chans, attention,
               kernel_size, drop_path)
