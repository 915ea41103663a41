"""Branch scales: the constants that tie a RepOpt target model to its multi-branch twin.

A scale dict maps ``"<conv path>.scale_conv"``, ``"<conv path>.scale_1x1"`` and
``"<conv path>.scale_identity"`` to per-output-channel vectors, ``<conv path>`` being a
re-parameterizable conv's module path inside the backbone (e.g. ``stage1.0.conv``).
These are exactly the state-dict names of the scales in the CSLA / hyper-search
models, so a searched model's scales are read off its state dict, and the dict
saves as-is to safetensors.

Convs are matched to keys by the longest suffix of their path, so scales searched on a
bare backbone also apply when the backbone sits inside an SSL method
(``backbone.stage1.0.conv``) or appears twice (an online and a momentum encoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from avfed.models.repopt_models import RepOptConvSpec

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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scales file at {path}")
    return load_file(str(path))


def save_scales(scales: Scales, path: str | Path) -> None:
    """Write a scale dict to a safetensors file."""
    save_file({k: v.detach().cpu().float().contiguous() for k, v in scales.items()}, str(path))


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
