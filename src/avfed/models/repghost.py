"""RepGhostNet: GhostNet whose feature reuse is re-parameterized instead of concatenated.

Chen et al., "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization"
(2022). A Ghost module makes cheap extra features with a depthwise 3×3 conv and
concatenates them with its input features; concatenation costs memory traffic on
edge hardware. RepGhost adds the two instead, ``ReLU(BN(DW3 * x1) + BN(x1))``, and
since both summands are linear in ``x1`` they fold into one depthwise conv with bias
for deployment.

The network around the module (stem, bottlenecks with squeeze-excite and conv
shortcuts, the 1×1 head) is shared with RepOpt-Ghost, so :class:`GhostStyleNet` takes
the module as a factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avfed.models.registry import register_model
from avfed.models.reparam import Reparameterizable, fold_bn, identity_kernel, load_kernel
from avfed.models.repvgg import CIFAR_STEM_STRIDE, PUBLISHED_STEM_STRIDE, default_stem_stride

#: ``(in_channels, out_channels, relu, module index in its stage) -> ghost module``
GhostModuleFactory = Callable[[int, int, bool, int], nn.Module]

#: one bottleneck: (kernel, expansion channels, output channels, SE ratio, stride)
BottleneckConfig = tuple[int, int, int, float, int]


def make_divisible(value: float, divisor: int = 4) -> int:
    """Round a scaled width to a multiple of ``divisor``, never losing more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class GhostLayout:
    """Stages of bottleneck configs before width scaling, as in the GhostNet tables."""

    stages: tuple[tuple[BottleneckConfig, ...], ...]
    width: float
    head_channels: int = 1280


_GHOSTNET_STAGES: tuple[tuple[BottleneckConfig, ...], ...] = (
    ((3, 8, 16, 0.0, 1),),
    ((3, 24, 24, 0.0, 2),),
    ((3, 36, 24, 0.0, 1),),
    ((5, 36, 40, 0.25, 2),),
    ((5, 60, 40, 0.25, 1),),
    ((3, 120, 80, 0.0, 2),),
    (
        (3, 100, 80, 0.0, 1),
        (3, 120, 80, 0.0, 1),
        (3, 120, 80, 0.0, 1),
        (3, 240, 112, 0.25, 1),
        (3, 336, 112, 0.25, 1),
    ),
    ((5, 336, 160, 0.25, 2),),
    (
        (5, 480, 160, 0.0, 1),
        (5, 480, 160, 0.25, 1),
        (5, 480, 160, 0.0, 1),
        (5, 480, 160, 0.25, 1),
    ),
)

GHOST_LAYOUTS: dict[str, GhostLayout] = {
    "0_5x": GhostLayout(_GHOSTNET_STAGES, 0.5),
    # every kind of bottleneck once: identity shortcut, stride 2 with a conv shortcut
    # and a 5×5 depthwise, squeeze-excite
    "tiny": GhostLayout(
        (((3, 16, 16, 0.0, 1),), ((3, 48, 24, 0.0, 2),), ((5, 72, 24, 0.25, 1),)),
        0.5,
        head_channels=64,
    ),
}


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features, with GhostNet's hard-sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 0.25) -> None:
        super().__init__()
        reduced = make_divisible(channels * ratio, 4)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * hard_sigmoid(gate)


class GhostBottleneck(nn.Module):
    """Ghost module (expand) → [strided DW conv-BN] → [SE] → ghost module (project) + shortcut."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        se_ratio: float,
        make_module: GhostModuleFactory,
        stage_block: int,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        # the two ghost modules of the b-th block in a stage are modules 2b-1 and 2b
        self.ghost1 = make_module(in_ch, mid_ch, True, 2 * stage_block - 1)
        self.dw = (
            nn.Sequential(
                nn.Conv2d(mid_ch, mid_ch, kernel, stride, kernel // 2, groups=mid_ch, bias=False),
                nn.BatchNorm2d(mid_ch),
            )
            if stride > 1
            else nn.Identity()
        )
        self.se = SqueezeExcite(mid_ch, se_ratio) if se_ratio > 0 else nn.Identity()
        self.ghost2 = make_module(mid_ch, out_ch, False, 2 * stage_block)
        if in_ch == out_ch and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, kernel, stride, kernel // 2, groups=in_ch, bias=False),
                nn.BatchNorm2d(in_ch),
                nn.Conv2d(in_ch, out_ch, 1, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost2(self.se(self.dw(self.ghost1(x))))
        return out + self.shortcut(x)


class GhostStyleNet(nn.Module):
    """Stem conv, the layout's bottlenecks, a 1×1 conv, pooling and the 1×1 head.

    Features are the head's ReLU output (``head_channels``), as in GhostNet, where
    only the classifier follows.
    """

    def __init__(
        self,
        layout: GhostLayout,
        make_module: GhostModuleFactory,
        in_chans: int = 3,
        stem_stride: int = PUBLISHED_STEM_STRIDE,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        in_ch = make_divisible(16 * layout.width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, in_ch, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        stage_block = 0  # position in the current run of same-shape blocks
        last_expansion = 0
        for configs in layout.stages:
            blocks = []
            for kernel, expansion, channels, se_ratio, stride in configs:
                out_ch = make_divisible(channels * layout.width)
                mid_ch = make_divisible(expansion * layout.width)
                stage_block = stage_block + 1 if stride == 1 and in_ch == out_ch else 1
                blocks.append(GhostBottleneck(in_ch, mid_ch, out_ch, kernel, stride, se_ratio,
                                              make_module, stage_block))
                in_ch, last_expansion = out_ch, expansion
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        final = make_divisible(last_expansion * layout.width * 2)
        self.final = nn.Sequential(
            nn.Conv2d(in_ch, final, 1, bias=False), nn.BatchNorm2d(final), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(final, layout.head_channels, 1, bias=True),
            nn.ReLU(inplace=True),
        )
        self.num_features = layout.head_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.head(self.final(self.blocks(self.stem(x)))), 1)


class RepGhostModule(Reparameterizable):
    """1×1 conv-BN(-ReLU) to ``x1``, then ``BN(DW3 * x1) + BN(x1)`` (-ReLU).

    The identity-BN "fusion" branch replaces GhostNet's concatenation; after
    :meth:`reparameterize` the cheap operation is one depthwise 3×3 conv with bias.
    """

    def __init__(self, in_ch: int, out_ch: int, relu: bool = True) -> None:
        super().__init__()
        self.out_ch = out_ch
        self.primary = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )
        self.cheap = nn.Conv2d(out_ch, out_ch, 3, 1, 1, groups=out_ch, bias=False)
        self.cheap_bn: nn.BatchNorm2d | None = nn.BatchNorm2d(out_ch)
        self.fusion_bn: nn.BatchNorm2d | None = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary(x)
        if self.cheap_bn is None or self.fusion_bn is None:
            return self.act(self.cheap(x1))
        return self.act(self.cheap_bn(self.cheap(x1)) + self.fusion_bn(x1))

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The depthwise 3×3 kernel and bias of the two branches' eval-mode sum."""
        if self.cheap_bn is None or self.fusion_bn is None:
            raise RuntimeError("this RepGhost module is already re-parameterized")
        weight, bias = fold_bn(self.cheap.weight, None, self.cheap_bn)
        eye = identity_kernel(self.out_ch, self.out_ch, (3, 3)).to(weight)
        w_id, b_id = fold_bn(eye, None, self.fusion_bn)
        return weight + w_id, bias + b_id

    def reparameterize(self) -> None:
        if self.cheap_bn is None:
            return
        weight, bias = self.equivalent_kernel_bias()
        self.cheap = load_kernel(
            nn.Conv2d(self.out_ch, self.out_ch, 3, 1, 1, groups=self.out_ch), weight, bias)
        self.cheap_bn = None
        self.fusion_bn = None
        self.deployed = True


def repghostnet(layout: str, in_chans: int = 3, stem_stride: int | None = None) -> GhostStyleNet:
    """A RepGhostNet backbone with one of :data:`GHOST_LAYOUTS`, in training form.

    ``stem_stride=None`` takes the layout's default: 2 as published for ``0_5x``, 1
    (CIFAR style) for ``tiny``.
    """
    if layout not in GHOST_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(GHOST_LAYOUTS)}, got '{layout}'")
    if stem_stride is None:
        stem_stride = default_stem_stride(layout)
    return GhostStyleNet(
        GHOST_LAYOUTS[layout],
        lambda i, o, relu, _: RepGhostModule(i, o, relu),
        in_chans=in_chans,
        stem_stride=stem_stride,
    )


@register_model("repghost_tiny", "RepGhostNet, 3 bottlenecks, 64 features (tests); "
                "args: stem_stride=1 (CIFAR style)")
def repghost_tiny(in_chans: int = 3, stem_stride: int = CIFAR_STEM_STRIDE) -> GhostStyleNet:
    return repghostnet("tiny", in_chans, stem_stride)


@register_model("repghost_0_5x", "RepGhostNet 0.5× (GhostNet layout, 1280 features); "
                "args: stem_stride=2 (published; 1 = CIFAR style)")
def repghost_0_5x(in_chans: int = 3, stem_stride: int = PUBLISHED_STEM_STRIDE) -> GhostStyleNet:
    """RepGhostNet 0.5× as published (stride-2 stem); ``stem_stride=1`` for CIFAR style."""
    return repghostnet("0_5x", in_chans, stem_stride)
