"""RepVGG: a multi-branch VGG for training that folds into a plain stack of 3×3 convs.

Ding et al., "RepVGG: Making VGG-style ConvNets Great Again" (CVPR 2021). Each block
trains as ``ReLU(BN(W3 * x) + BN(W1 * x) + BN(x))`` (the identity branch only where input
and output shapes agree); since every branch is linear until the ReLU, the three fold
into one 3×3 conv with bias for deployment, which is what edge devices then run.

The layout (five stages, the first a single block, each opening with a stride) is
shared with the RepOpt models, so it is written once here as :class:`VGGStyleNet` with
the block left to a factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from avfed.models.registry import register_model
from avfed.models.reparam import (
    Reparameterizable,
    fold_bn,
    identity_kernel,
    load_kernel,
    pad_kernel,
)

#: ``(in_channels, out_channels, stride, position in its stage) -> block``
BlockFactory = Callable[[int, int, int, int], nn.Module]


@dataclass(frozen=True)
class VGGLayout:
    """Blocks per stage 1–4 and the width multipliers ``(a, a, a, b)`` of the paper.

    Stage widths are ``min(64, 64a)`` for the stem stage, then ``64a, 128a, 256a, 512b``.
    """

    depths: tuple[int, int, int, int]
    width_multipliers: tuple[float, float, float, float]

    def channels(self) -> tuple[int, int, int, int, int]:
        a = self.width_multipliers
        return (
            min(64, int(64 * a[0])),
            int(64 * a[0]),
            int(128 * a[1]),
            int(256 * a[2]),
            int(512 * a[3]),
        )


VGG_LAYOUTS: dict[str, VGGLayout] = {
    # RepVGG-A0 and -B1 as published; "tiny" keeps the shape of the family (an identity
    # block in a stage, a stride + width change between stages) at a few thousand weights
    "a0": VGGLayout((2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5)),
    "b1": VGGLayout((4, 6, 16, 1), (2.0, 2.0, 2.0, 4.0)),
    "tiny": VGGLayout((1, 2, 1, 1), (0.125, 0.125, 0.125, 0.125)),
}


#: the stem stride of the published networks (RepVGG, RepGhostNet, RepOpt-VGG): five
#: stride-2 stages, 224×224 → 7×7. The default of every registered published layout.
PUBLISHED_STEM_STRIDE = 2
#: the CIFAR-style stem: stride 1, so a 32×32 input still ends at 2×2 instead of 1×1.
#: The default of the test-sized ``tiny`` layouts only; pass ``stem_stride=1`` to get it
#: for a published layout.
CIFAR_STEM_STRIDE = 1


def default_stem_stride(layout: str) -> int:
    """:data:`CIFAR_STEM_STRIDE` for the ``tiny`` test layouts, else the published 2."""
    return CIFAR_STEM_STRIDE if layout == "tiny" else PUBLISHED_STEM_STRIDE


def vgg_strides(stem_stride: int) -> tuple[int, int, int, int, int]:
    """The five stage strides; the published nets use 2 everywhere (224×224 inputs).

    On 32×32 inputs a stride-1 stem (:data:`CIFAR_STEM_STRIDE`) keeps a 2×2 map at the
    end instead of 1×1.
    """
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    return (stem_stride, 2, 2, 2, 2)


class VGGStyleNet(nn.Module):
    """Stem block, four stages of ``make_block`` blocks, global average pooling.

    ``make_block`` decides what a block is (RepVGG, a plain conv-BN-ReLU, a CSLA block),
    so every VGG-style model in avfed has the same module names and layout.
    """

    def __init__(
        self,
        layout: VGGLayout,
        make_block: BlockFactory,
        in_chans: int = 3,
        strides: Sequence[int] = (PUBLISHED_STEM_STRIDE, 2, 2, 2, 2),
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if len(strides) != 5:
            raise ValueError(f"strides must give 5 stage strides, got {tuple(strides)}")
        if any(d < 1 for d in layout.depths):
            raise ValueError(f"every stage needs at least one block, got {layout.depths}")
        widths = layout.channels()
        self.stage0 = make_block(in_chans, widths[0], strides[0], 0)
        in_ch = widths[0]
        stages: list[nn.Module] = []
        for depth, width, stride in zip(layout.depths, widths[1:], strides[1:], strict=True):
            blocks = []
            for position in range(depth):
                blocks.append(make_block(in_ch, width, stride if position == 0 else 1, position))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage0(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return torch.flatten(self.pool(x), 1)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class RepVGGBlock(Reparameterizable):
    """3×3 conv-BN + 1×1 conv-BN (+ identity BN when shapes allow), summed, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.branch_3x3 = _conv_bn(in_ch, out_ch, 3, stride)
        self.branch_1x1 = _conv_bn(in_ch, out_ch, 1, stride)
        self.branch_identity = (
            nn.BatchNorm2d(out_ch) if in_ch == out_ch and stride == 1 else None
        )
        self.fused: nn.Conv2d | None = None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        out = self.branch_3x3(x) + self.branch_1x1(x)
        if self.branch_identity is not None:
            out = out + self.branch_identity(x)
        return self.act(out)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3×3 kernel and bias that compute the three branches' eval-mode sum."""
        if self.fused is not None:
            raise RuntimeError("this RepVGG block is already re-parameterized")
        w3, b3 = fold_bn(self.branch_3x3[0].weight, None, self.branch_3x3[1])
        w1, b1 = fold_bn(self.branch_1x1[0].weight, None, self.branch_1x1[1])
        weight, bias = w3 + pad_kernel(w1, (3, 3)), b3 + b1
        if self.branch_identity is not None:
            eye = identity_kernel(self.out_ch, 1, (3, 3)).to(weight)
            w_id, b_id = fold_bn(eye, None, self.branch_identity)
            weight, bias = weight + w_id, bias + b_id
        return weight, bias

    def reparameterize(self) -> None:
        if self.fused is not None:
            return
        weight, bias = self.equivalent_kernel_bias()
        self.fused = load_kernel(nn.Conv2d(self.in_ch, self.out_ch, 3, self.stride, 1),
                                 weight, bias)
        del self.branch_3x3, self.branch_1x1
        self.branch_identity = None
        self.deployed = True


def repvgg(layout: str, in_chans: int = 3, stem_stride: int | None = None) -> VGGStyleNet:
    """A RepVGG backbone with one of :data:`VGG_LAYOUTS`, in training form.

    ``stem_stride=None`` takes the layout's default (:func:`default_stem_stride`): 2 as
    published for ``a0`` / ``b1``, 1 (CIFAR style) for ``tiny``.
    """
    if layout not in VGG_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(VGG_LAYOUTS)}, got '{layout}'")
    if stem_stride is None:
        stem_stride = default_stem_stride(layout)
    return VGGStyleNet(
        VGG_LAYOUTS[layout],
        lambda i, o, s, _: RepVGGBlock(i, o, s),
        in_chans=in_chans,
        strides=vgg_strides(stem_stride),
    )


@register_model("repvgg_tiny", "RepVGG, 1-2-1-1 blocks, widths 8–64 (tests); "
                "args: stem_stride=1 (CIFAR style)")
def repvgg_tiny(in_chans: int = 3, stem_stride: int = CIFAR_STEM_STRIDE) -> VGGStyleNet:
    return repvgg("tiny", in_chans, stem_stride)


@register_model("repvgg_a0", "RepVGG-A0 (2-4-14-1 blocks, 48–1280 wide); "
                "args: stem_stride=2 (published; 1 = CIFAR style)")
def repvgg_a0(in_chans: int = 3, stem_stride: int = PUBLISHED_STEM_STRIDE) -> VGGStyleNet:
    """RepVGG-A0 as published (stride-2 stem); ``stem_stride=1`` for the CIFAR-style stem."""
    return repvgg("a0", in_chans, stem_stride)


@register_model("repvgg_b1", "RepVGG-B1 (4-6-16-1 blocks, 64–2048 wide); "
                "args: stem_stride=2 (published; 1 = CIFAR style)")
def repvgg_b1(in_chans: int = 3, stem_stride: int = PUBLISHED_STEM_STRIDE) -> VGGStyleNet:
    """RepVGG-B1 as published (stride-2 stem); ``stem_stride=1`` for the CIFAR-style stem."""
    return repvgg("b1", in_chans, stem_stride)
