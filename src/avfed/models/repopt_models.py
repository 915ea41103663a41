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

The branch scales that tie a target to its multi-branch twin (:func:`default_scales`,
:func:`resolve_scales`, safetensors I/O) and the re-initialisation from them
(:func:`initialize_from_scales`) live here too, so that building a target never needs
:mod:`avfed.optim`; ``avfed.optim`` depends on this module, never the reverse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avfed.models.registry import register_model
from avfed.models.reparam import identity_kernel, pad_kernel
from avfed.models.repghost import GHOST_LAYOUTS, GhostStyleNet
from avfed.models.repvgg import (
    CIFAR_STEM_STRIDE,
    PUBLISHED_STEM_STRIDE,
    VGG_LAYOUTS,
    VGGStyleNet,
    default_stem_stride,
    vgg_strides,
)
from avfed.runs import load_checkpoint, save_checkpoint


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
    layout: str, make_conv: ConvFactory = RepOptConv2d, in_chans: int = 3,
    stem_stride: int | None = None,
) -> VGGStyleNet:
    """A VGG-style RepOpt network whose 3×3 convs are built by ``make_conv``.

    ``stem_stride=None`` takes the layout's default: 2 as published for ``a0`` / ``b1``,
    1 (CIFAR style) for ``tiny``.
    """
    if layout not in VGG_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(VGG_LAYOUTS)}, got '{layout}'")
    if stem_stride is None:
        stem_stride = default_stem_stride(layout)

    def block(in_ch: int, out_ch: int, stride: int, position: int) -> nn.Module:
        spec = RepOptConvSpec(
            in_ch, out_ch, stride, depthwise=False, has_1x1=True,
            has_identity=in_ch == out_ch and stride == 1, init_scale=vgg_scale_init(position),
        )
        return RepOptVGGBlock(make_conv(spec), out_ch)

    return VGGStyleNet(VGG_LAYOUTS[layout], block, in_chans, vgg_strides(stem_stride))


def repopt_ghost(
    layout: str, make_conv: ConvFactory = RepOptConv2d, in_chans: int = 3,
    stem_stride: int | None = None,
) -> GhostStyleNet:
    """A RepGhost-style RepOpt network whose cheap depthwise convs are built by ``make_conv``.

    ``stem_stride=None`` takes the layout's default: 2 as published for ``0_5x``, 1 (CIFAR
    style) for ``tiny``.
    """
    if layout not in GHOST_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(GHOST_LAYOUTS)}, got '{layout}'")
    if stem_stride is None:
        stem_stride = default_stem_stride(layout)

    def module(in_ch: int, out_ch: int, relu: bool, index: int) -> nn.Module:
        spec = RepOptConvSpec(
            out_ch, out_ch, 1, depthwise=True, has_1x1=False, has_identity=True,
            init_scale=ghost_scale_init(index),
        )
        return RepOptGhostModule(in_ch, out_ch, relu, make_conv(spec))

    return GhostStyleNet(GHOST_LAYOUTS[layout], module, in_chans, stem_stride)


# --- branch scales -----------------------------------------------------------------------
# A scale dict maps ``"<conv path>.scale_conv"``, ``"<conv path>.scale_1x1"`` and
# ``"<conv path>.scale_identity"`` to per-output-channel vectors, ``<conv path>`` being a
# RepOpt conv's module path inside the backbone (e.g. ``stage1.0.conv``). These are the
# state-dict names of the scales in the CSLA / hyper-search models, so a searched model's
# scales are read off its state dict, and the dict saves as-is to safetensors. Convs are
# matched to keys by the longest suffix of their path, so scales searched on a bare
# backbone also apply inside an SSL method (``backbone.stage1.0.conv``) or to a backbone
# that appears twice (an online and a momentum encoder).

Scales = Mapping[str, torch.Tensor]
#: a scale dict, a safetensors file holding one, or None for the search's start values
ScalesSource = Scales | str | Path | None


@dataclass(frozen=True)
class BranchScales:
    """The scales of one conv's branches (``None`` for a branch it does not have)."""

    conv: torch.Tensor
    one_by_one: torch.Tensor | None
    identity: torch.Tensor | None


def scale_names(spec: RepOptConvSpec) -> list[str]:
    """The scale kinds a conv with this spec takes, in a fixed order."""
    names = ["scale_conv"]
    if spec.has_1x1:
        names.append("scale_1x1")
    if spec.has_identity:
        names.append("scale_identity")
    return names


def repopt_slots(model: nn.Module, slot_type: type[nn.Module]) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every module of ``slot_type`` carrying a RepOpt conv spec."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, slot_type) and isinstance(getattr(module, "spec", None),
                                                        RepOptConvSpec)
    ]


def default_scales(model: nn.Module) -> dict[str, torch.Tensor]:
    """The hyper-search's start values for every RepOpt conv of ``model``.

    Conv and 1×1 scales start at the spec's ``init_scale`` (1 for a stage's first VGG
    block, ``sqrt(2 / i)`` after it; ``sqrt(2 / (n + 1))`` for Ghost), identity scales at
    1. Training with these and no search is the "no-search" RepOpt baseline.
    """
    scales: dict[str, torch.Tensor] = {}
    for name, module in repopt_slots(model, nn.Module):
        spec: RepOptConvSpec = module.spec
        for kind in scale_names(spec):
            value = 1.0 if kind == "scale_identity" else spec.init_scale
            scales[f"{name}.{kind}"] = torch.full((spec.out_channels,), value)
    return scales


def load_scales(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a scale dict written by :func:`save_scales` (or the hyper-search CLI)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no scales file at {path}")
    return load_checkpoint(path)


def save_scales(scales: Scales, path: str | Path) -> None:
    """Write a scale dict to a safetensors file (float32, whatever the search ran in)."""
    save_checkpoint({k: v.float() for k, v in scales.items()}, path)


def as_scales(source: ScalesSource, model: nn.Module) -> Scales:
    """Turn a :data:`ScalesSource` into a scale dict for ``model``."""
    if source is None:
        return default_scales(model)
    if isinstance(source, str | Path):
        return load_scales(source)
    if not isinstance(source, Mapping):
        raise TypeError(f"scales must be a dict of tensors, a file path or None, got "
                        f"{type(source).__name__}")
    return source


def _matching_prefix(path: str, keys: set[str]) -> str | None:
    """The longest suffix of ``path`` under which ``keys`` hold a conv scale."""
    parts = path.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:])
        if f"{candidate}.scale_conv" in keys:
            return candidate
    return None


def _checked(scales: Scales, key: str, channels: int) -> torch.Tensor:
    value = scales[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"scales['{key}'] must be a tensor, got {type(value).__name__}")
    if tuple(value.shape) != (channels,):
        raise ValueError(f"scales['{key}'] must have shape ({channels},) (one per output "
                         f"channel), got {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"scales['{key}'] holds non-finite values")
    return value


def resolve_scales(
    model: nn.Module, scales: Scales, slot_type: type[nn.Module]
) -> list[tuple[str, nn.Module, BranchScales]]:
    """Pair every RepOpt conv of ``model`` with its checked scales.

    Raises if a conv has no scales, a scale has the wrong shape, or a key matches no
    conv (scales searched for a different architecture).
    """
    slots = repopt_slots(model, slot_type)
    if not slots:
        raise ValueError(f"{type(model).__name__} has no RepOpt convolution; build it with "
                         "one of the repopt_* models")
    keys = set(scales)
    used: set[str] = set()
    resolved = []
    for path, module in slots:
        spec: RepOptConvSpec = module.spec
        prefix = _matching_prefix(path, keys)
        if prefix is None:
            raise ValueError(f"scales have no entry for the RepOpt conv '{path}' (expected a "
                             f"key such as '{path}.scale_conv'); were they searched for this "
                             "model?")
        found = {}
        for kind in scale_names(spec):
            key = f"{prefix}.{kind}"
            if key not in keys:
                raise ValueError(f"scales lack '{key}', needed by the RepOpt conv '{path}'")
            found[kind] = _checked(scales, key, spec.out_channels)
            used.add(key)
        resolved.append((path, module, BranchScales(
            found["scale_conv"], found.get("scale_1x1"), found.get("scale_identity"))))
    unused = sorted(keys - used)
    if unused:
        raise ValueError(f"scales hold {len(unused)} entries that match no RepOpt conv of "
                         f"this model, e.g. {unused[:3]}; were they searched for another "
                         "architecture?")
    return resolved


@torch.no_grad()
def initialize_from_scales(model: nn.Module, scales: ScalesSource = None) -> nn.Module:
    """Re-initialise every RepOpt conv as its CSLA twin would start, in place.

    ``W' = s·W + s1·pad(W1) + s_id·I``: ``W`` is the conv's own fresh weight, ``W1`` a
    fresh 1×1 kernel drawn like ``nn.Conv2d`` draws one (torch's global RNG, so seeding
    makes it repeatable). Call it once on a freshly built model, not on trained weights.
    """
    for _, conv, branch in resolve_scales(model, as_scales(scales, model), RepOptConv2d):
        spec: RepOptConvSpec = conv.spec
        weight = conv.weight
        new = weight * branch.conv.to(weight).reshape(-1, 1, 1, 1)
        if spec.has_1x1 and branch.one_by_one is not None:
            w1 = torch.empty(spec.out_channels, spec.in_channels // spec.groups, 1, 1)
            nn.init.kaiming_uniform_(w1, a=math.sqrt(5))
            k = spec.kernel_size
            new += pad_kernel(w1.to(weight), (k, k)) * branch.one_by_one.to(weight).reshape(
                -1, 1, 1, 1)
        if spec.has_identity and branch.identity is not None:
            eye = identity_kernel(spec.out_channels, spec.groups, weight.shape[-2:]).to(weight)
            new += eye * branch.identity.to(weight).reshape(-1, 1, 1, 1)
        weight.copy_(new)
    return model


#: registered name → (family builder, layout)
REPOPT_ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "repopt_vgg_tiny": (repopt_vgg, "tiny"),
    "repopt_vgg_a0": (repopt_vgg, "a0"),
    "repopt_vgg_b1": (repopt_vgg, "b1"),
    "repopt_ghost_tiny": (repopt_ghost, "tiny"),
    "repopt_ghost_0_5x": (repopt_ghost, "0_5x"),
}


def build_repopt_model(
    name: str, make_conv: ConvFactory = RepOptConv2d, in_chans: int = 3,
    stem_stride: int | None = None,
) -> nn.Module:
    """The architecture registered as ``name`` with ``make_conv`` in every RepOpt slot.

    ``stem_stride=None`` is the registered model's default (2 as published, 1 for the
    ``tiny`` test layouts), so a twin built here matches ``models.create(name)``.
    """
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
        initialize_from_scales(model, scales)
    return model


_ARGS = "args: stem_stride, scales (safetensors path; none = search start), reinit"
_PUBLISHED = "stem_stride=2 (published; 1 = CIFAR style)"
_TINY = "stem_stride=1 (CIFAR style)"


@register_model("repopt_vgg_tiny", f"RepOpt-VGG target, tiny layout (tests); {_ARGS}; {_TINY}",
                repopt=True)
def repopt_vgg_tiny(in_chans: int = 3, stem_stride: int = CIFAR_STEM_STRIDE,
                    scales: str | None = None, reinit: bool = True) -> nn.Module:
    return _target("repopt_vgg_tiny", in_chans, stem_stride, scales, reinit)


@register_model("repopt_vgg_a0", f"RepOpt-VGG target, RepVGG-A0 layout; {_ARGS}; {_PUBLISHED}",
                repopt=True)
def repopt_vgg_a0(in_chans: int = 3, stem_stride: int = PUBLISHED_STEM_STRIDE,
                  scales: str | None = None, reinit: bool = True) -> nn.Module:
    """RepOpt-VGG-A0 as published (stride-2 stem); ``stem_stride=1`` for CIFAR style."""
    return _target("repopt_vgg_a0", in_chans, stem_stride, scales, reinit)


@register_model("repopt_vgg_b1", f"RepOpt-VGG target, RepVGG-B1 layout; {_ARGS}; {_PUBLISHED}",
                repopt=True)
def repopt_vgg_b1(in_chans: int = 3, stem_stride: int = PUBLISHED_STEM_STRIDE,
                  scales: str | None = None, reinit: bool = True) -> nn.Module:
    """RepOpt-VGG-B1 as published (stride-2 stem); ``stem_stride=1`` for CIFAR style."""
    return _target("repopt_vgg_b1", in_chans, stem_stride, scales, reinit)


@register_model("repopt_ghost_tiny", f"RepOpt-Ghost target, tiny layout (tests); {_ARGS}; "
                f"{_TINY}", repopt=True)
def repopt_ghost_tiny(in_chans: int = 3, stem_stride: int = CIFAR_STEM_STRIDE,
                      scales: str | None = None, reinit: bool = True) -> nn.Module:
    return _target("repopt_ghost_tiny", in_chans, stem_stride, scales, reinit)


@register_model("repopt_ghost_0_5x", f"RepOpt-Ghost target, GhostNet 0.5× layout; {_ARGS}; "
                f"{_PUBLISHED}", repopt=True)
def repopt_ghost_0_5x(in_chans: int = 3, stem_stride: int = PUBLISHED_STEM_STRIDE,
                      scales: str | None = None, reinit: bool = True) -> nn.Module:
    """RepOpt-Ghost 0.5× as published (stride-2 stem); ``stem_stride=1`` for CIFAR style."""
    return _target("repopt_ghost_0_5x", in_chans, stem_stride, scales, reinit)
