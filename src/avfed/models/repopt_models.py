"""RepOpt target models: plain conv-BN-ReLU networks meant to be trained with RepOptSGD.

Ding et al., "Re-parameterizing Your Optimizers rather than Architectures" (ICLR 2023)
move RepVGG's structural prior from the architecture into the optimizer: the model
that trains is the plain one that deploys, and the optimizer rescales its gradients so
that it follows the same trajectory as a multi-branch model with constant branch
scales (see :mod:`avfed.optim.repopt`). FedRepOpt (Lau et al., ACCV 2024) trains these
plain models federatedly.

Each convolution the optimizer treats specially is a :class:`RepOptConv2d`, which
carries a :class:`RepOptConvSpec` naming the branches it stands for. The networks are
built through a ``make_conv`` slot so that the multi-branch forms used for the
hyper-search and the equivalence checks (``avfed.optim.csla``) share every module name
with the target, and their state dicts map onto it key by key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from avfed.models.registry import register_model
from avfed.models.repghost import GHOST_LAYOUTS, GhostStyleNet
from avfed.models.repvgg import VGG_LAYOUTS, VGGStyleNet, vgg_strides


@dataclass(frozen=True)
class RepOptConvSpec:
    """One re-parameterizable conv: its shape and the branches it is equivalent to.

    ``init_scale`` is the hyper-search's starting value for the conv (and 1×1) branch
    scales, which is also the "no search" default when no searched scales are given.
    """

    in_channels: int
    out_channels: int
    stride: int
    depthwise: bool
    has_1x1: bool
    has_identity: bool
    init_scale: float
    kernel_size: int = 3

    def __post_init__(self) -> None:
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.depthwise and self.in_channels != self.out_channels:
            raise ValueError("a depthwise RepOpt conv needs in_channels == out_channels, got "
                             f"{self.in_channels} and {self.out_channels}")
        if self.has_identity and (self.in_channels != self.out_channels or self.stride != 1):
            raise ValueError("an identity branch needs in_channels == out_channels and "
                             f"stride 1, got {self.in_channels}→{self.out_channels}, "
                             f"stride {self.stride}")

    @property
    def groups(self) -> int:
        return self.in_channels if self.depthwise else 1


#: builds the module that fills a re-parameterizable conv slot
ConvFactory = Callable[[RepOptConvSpec], nn.Module]


class RepOptConv2d(nn.Conv2d):
    """A plain bias-free conv that RepOptSGD recognises by its type and reads ``spec`` of."""

    def __init__(self, spec: RepOptConvSpec) -> None:
        super().__init__(
            spec.in_channels,
            spec.out_channels,
            spec.kernel_size,
            spec.stride,
            spec.kernel_size // 2,
            groups=spec.groups,
            bias=False,
        )
        self.spec = spec


class RepOptVGGBlock(nn.Module):
    """``ReLU(BN(conv(x)))``; the conv is a target conv or a multi-branch CSLA form."""

    def __init__(self, conv: nn.Module, out_ch: int) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RepOptGhostModule(nn.Module):
    """1×1 conv-BN(-ReLU) to ``x1``, then ``BN(cheap(x1))`` (-ReLU).

    In the target the cheap operation is one depthwise 3×3 conv; its CSLA form is
    ``s_c ⊙ DW3(x1) + s_f ⊙ x1``, RepGhost's fusion branch with a scale for a BN.
    """

    def __init__(self, in_ch: int, out_ch: int, relu: bool, cheap: nn.Module) -> None:
        super().__init__()
        self.primary = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )
        self.cheap = cheap
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.cheap(self.primary(x))))


def vgg_scale_init(position: int) -> float:
    """Hyper-search start: 1 for a stage's first block, ``sqrt(2 / i)`` for block ``i``.

    Deeper blocks of a stage start with smaller branch scales so that the variance of
    the residual-like sum does not grow with depth.
    """
    return 1.0 if position == 0 else math.sqrt(2.0 / position)


def ghost_scale_init(module_index: int) -> float:
    """Hyper-search start for the ``n``-th ghost module of a stage: ``sqrt(2 / (n + 1))``."""
    return math.sqrt(2.0 / (module_index + 1))


def repopt_vgg(
    layout: str, make_conv: ConvFactory = RepOptConv2d, in_chans: int = 3, stem_stride: int = 1
) -> VGGStyleNet:
    """A VGG-style RepOpt network whose 3×3 convs are built by ``make_conv``."""
    if layout not in VGG_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(VGG_LAYOUTS)}, got '{layout}'")

    def block(in_ch: int, out_ch: int, stride: int, position: int) -> nn.Module:
        spec = RepOptConvSpec(
            in_ch, out_ch, stride, depthwise=False, has_1x1=True,
            has_identity=in_ch == out_ch and stride == 1, init_scale=vgg_scale_init(position),
        )
        return RepOptVGGBlock(make_conv(spec), out_ch)

    return VGGStyleNet(VGG_LAYOUTS[layout], block, in_chans, vgg_strides(stem_stride))


def repopt_ghost(
    layout: str, make_conv: ConvFactory = RepOptConv2d, in_chans: int = 3, stem_stride: int = 1
) -> GhostStyleNet:
    """A RepGhost-style RepOpt network whose cheap depthwise convs are built by ``make_conv``."""
    if layout not in GHOST_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(GHOST_LAYOUTS)}, got '{layout}'")

    def module(in_ch: int, out_ch: int, relu: bool, index: int) -> nn.Module:
        spec = RepOptConvSpec(
            out_ch, out_ch, 1, depthwise=True, has_1x1=False, has_identity=True,
            init_scale=ghost_scale_init(index),
        )
        return RepOptGhostModule(in_ch, out_ch, relu, make_conv(spec))

    return GhostStyleNet(GHOST_LAYOUTS[layout], module, in_chans, stem_stride)


#: registered name → (family builder, layout)
REPOPT_ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "repopt_vgg_tiny": (repopt_vgg, "tiny"),
    "repopt_vgg_a0": (repopt_vgg, "a0"),
    "repopt_vgg_b1": (repopt_vgg, "b1"),
    "repopt_ghost_tiny": (repopt_ghost, "tiny"),
    "repopt_ghost_0_5x": (repopt_ghost, "0_5x"),
}


def build_repopt_model(
    name: str, make_conv: ConvFactory = RepOptConv2d, in_chans: int = 3, stem_stride: int = 1
) -> nn.Module:
    """The architecture registered as ``name`` with ``make_conv`` in every RepOpt slot."""
    if name not in REPOPT_ARCHITECTURES:
        raise ValueError(f"model must be one of {sorted(REPOPT_ARCHITECTURES)}, got '{name}'")
    family, layout = REPOPT_ARCHITECTURES[name]
    return family(layout, make_conv, in_chans=in_chans, stem_stride=stem_stride)


def _target(
    name: str, in_chans: int, stem_stride: int, scales: str | None, reinit: bool
) -> nn.Module:
    """Build a target model and, unless told not to, re-initialise it from branch scales.

    The re-initialisation ``W' = s·W + s1·pad(W1) + s_id·I`` starts the plain model where
    the equivalent multi-branch model would start, which RepOpt training assumes.
    """
    if scales is not None and not reinit:
        raise ValueError("scales only serve the re-initialisation; pass reinit=True with them")
    model = build_repopt_model(name, in_chans=in_chans, stem_stride=stem_stride)
    if reinit:
        from avfed.optim.repopt import initialize_from_scales  # the optimizer depends on us

        initialize_from_scales(model, scales)
    return model


_ARGS = "args: stem_stride, scales (safetensors path; none = search start), reinit"


@register_model("repopt_vgg_tiny", f"RepOpt-VGG target, tiny layout (tests); {_ARGS}")
def repopt_vgg_tiny(in_chans: int = 3, stem_stride: int = 1, scales: str | None = None,
                    reinit: bool = True) -> nn.Module:
    return _target("repopt_vgg_tiny", in_chans, stem_stride, scales, reinit)


@register_model("repopt_vgg_a0", f"RepOpt-VGG target, RepVGG-A0 layout; {_ARGS}")
def repopt_vgg_a0(in_chans: int = 3, stem_stride: int = 1, scales: str | None = None,
                  reinit: bool = True) -> nn.Module:
    return _target("repopt_vgg_a0", in_chans, stem_stride, scales, reinit)


@register_model("repopt_vgg_b1", f"RepOpt-VGG target, RepVGG-B1 layout; {_ARGS}")
def repopt_vgg_b1(in_chans: int = 3, stem_stride: int = 1, scales: str | None = None,
                  reinit: bool = True) -> nn.Module:
    return _target("repopt_vgg_b1", in_chans, stem_stride, scales, reinit)


@register_model("repopt_ghost_tiny", f"RepOpt-Ghost target, tiny layout (tests); {_ARGS}")
def repopt_ghost_tiny(in_chans: int = 3, stem_stride: int = 1, scales: str | None = None,
                      reinit: bool = True) -> nn.Module:
    return _target("repopt_ghost_tiny", in_chans, stem_stride, scales, reinit)


@register_model("repopt_ghost_0_5x", f"RepOpt-Ghost target, GhostNet 0.5× layout; {_ARGS}")
def repopt_ghost_0_5x(in_chans: int = 3, stem_stride: int = 1, scales: str | None = None,
                      reinit: bool = True) -> nn.Module:
    return _target("repopt_ghost_0_5x", in_chans, stem_stride, scales, reinit)
