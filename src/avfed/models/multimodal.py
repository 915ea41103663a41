"""One backbone for several modalities: a thin stem per modality into a shared trunk.

Unpaired audio-visual SSL (FSSUAVL) trains a single encoder on images and on log-mel
spectrograms. Only the first layer knows which modality it reads (channel count and
input statistics differ); everything after it, and the projector, is shared, so both
modalities are embedded in one space. The SSL methods stay modality-agnostic: the
training loop selects the active stem with :func:`use_modality`, and a forward call
with a ``{modality: batch}`` dict routes each batch to its own stem and returns the
features concatenated in the dict's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from avfed.models.registry import register_model
from avfed.models.resnet import CifarResNet
from avfed.models.vit import (
    PatchEmbed,
    VisionTransformer,
    encode_tokens,
    pair_of_ints,
    resize_position_table,
)


class MultiModalBackbone(nn.Module):
    """``stems[m]`` maps modality ``m``'s input to the trunk's input; ``trunk`` is shared."""

    def __init__(self, stems: Mapping[str, nn.Module], trunk: nn.Module,
                 num_features: int) -> None:
        super().__init__()
        if not stems:
            raise ValueError("a multi-modal backbone needs at least one modality stem")
        self.stems = nn.ModuleDict(dict(stems))
        self.trunk = trunk
        self.num_features = num_features
        self.active_modality = next(iter(self.stems))

    def select(self, modality: str) -> None:
        if modality not in self.stems:
            raise KeyError(f"no stem for modality '{modality}'; this backbone has "
                           f"{', '.join(self.stems)}")
        self.active_modality = modality

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(x, Mapping):  # routed by key: no module state is read or changed
            for modality in x:
                if modality not in self.stems:
                    raise KeyError(f"no stem for modality '{modality}'; this backbone has "
                                   f"{', '.join(self.stems)}")
            return torch.cat([self.trunk(self.stems[m](batch)) for m, batch in x.items()])
        return self.trunk(self.stems[self.active_modality](x))


@contextmanager
def use_modality(model: nn.Module, modality: str | None) -> Iterator[None]:
    """Route plain-tensor inputs of every multi-modal backbone in ``model`` to ``modality``.

    A no-op for single-modality models (or ``modality=None``), so callers need not
    know which kind they hold.
    """
    backbones = [m for m in model.modules() if isinstance(m, MultiModalBackbone)]
    previous = [b.active_modality for b in backbones]
    if modality is not None:
        for backbone in backbones:
            backbone.select(modality)
    try:
        yield
    finally:
        for backbone, before in zip(backbones, previous, strict=True):
            backbone.active_modality = before


class _ResNetTrunk(nn.Module):
    """A CIFAR ResNet minus its stem (the stages and the pooling)."""

    def __init__(self, resnet: CifarResNet) -> None:
        super().__init__()
        self.stages, self.pool = resnet.stages, resnet.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(x)), 1)


def _conv_stem(in_chans: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU(inplace=True))


def _multimodal_resnet(depths: tuple[int, ...], modalities: Mapping[str, int] | None,
                       in_chans: int, width: int) -> MultiModalBackbone:
    channels = dict(modalities or {"image": in_chans, "audio": 1})
    resnet = CifarResNet(depths, in_chans=1, width=width)
    stems = {m: _conv_stem(c, width) for m, c in channels.items()}
    return MultiModalBackbone(stems, _ResNetTrunk(resnet), resnet.num_features)


@register_model("mm_resnet18_cifar",
                "ResNet-18 trunk shared by image and log-mel inputs, one 3×3 stem per "
                "modality; args: width, modalities={name: channels}", multimodal=True)
def mm_resnet18_cifar(in_chans: int = 1, width: int = 64,
                      modalities: Mapping[str, int] | None = None) -> MultiModalBackbone:
    return _multimodal_resnet((2, 2, 2, 2), modalities, in_chans, width)


@register_model("mm_resnet10_cifar",
                "ResNet-10 trunk shared by image and log-mel inputs, one stem per "
                "modality; args: width, modalities={name: channels}", multimodal=True)
def mm_resnet10_cifar(in_chans: int = 1, width: int = 64,
                      modalities: Mapping[str, int] | None = None) -> MultiModalBackbone:
    return _multimodal_resnet((1, 1, 1, 1), modalities, in_chans, width)


class _PatchStem(nn.Module):
    """A modality's patch embedding with its own position table.

    Images and spectrograms have different grids (a 32×32 image with 4×4 patches is
    8×8, a 40-mel × 51-frame clip is 10×13) and different meanings along each axis, so
    each modality learns its own table at ``grid_size``, resized to the actual grid.
    """

    def __init__(self, in_chans: int, dim: int, patch: tuple[int, int],
                 grid_size: tuple[int, int]) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.grid_size = grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size[0] * grid_size[1], dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, grid = self.patch_embed(x)
        return tokens + resize_position_table(self.pos_embed, self.grid_size, grid)


class _TransformerTrunk(nn.Module):
    """A ViT minus its patch embedding: CLS token, blocks, final norm, pooling."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.cls_token, self.blocks, self.norm = vit.cls_token, vit.blocks, vit.norm

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return encode_tokens(tokens, self.cls_token, self.blocks, self.norm)


def _multimodal_vit(dim: int, depth: int, heads: int, modalities: Mapping[str, int] | None,
                    in_chans: int, patch_size: int | tuple[int, int],
                    grid_size: int | tuple[int, int], pool: str,
                    drop_path: float) -> MultiModalBackbone:
    channels = dict(modalities or {"image": in_chans, "audio": 1})
    patch, grid = pair_of_ints(patch_size, "patch_size"), pair_of_ints(grid_size, "grid_size")
    vit = VisionTransformer((grid[0] * patch[0], grid[1] * patch[1]), patch, 1, dim=dim,
                            depth=depth, heads=heads, pool=pool, drop_path=drop_path)
    stems = {m: _PatchStem(c, dim, patch, grid) for m, c in channels.items()}
    return MultiModalBackbone(stems, _TransformerTrunk(vit), vit.num_features)


_MM_VIT_ARGS = ("args: patch_size, grid_size (each modality's position table, resized to "
                "its input), pool ('cls'|'mean'), drop_path, modalities={name: channels}")


@register_model("mm_vit_tiny", "ViT-Tiny trunk (dim 192, depth 12, 3 heads) shared by image "
                f"and log-mel inputs, a patch embedding per modality; {_MM_VIT_ARGS}",
                multimodal=True)
def mm_vit_tiny(in_chans: int = 1, patch_size: int | tuple[int, int] = 4,
                grid_size: int | tuple[int, int] = 8, pool: str = "cls",
                drop_path: float = 0.0,
                modalities: Mapping[str, int] | None = None) -> MultiModalBackbone:
    return _multimodal_vit(192, 12, 3, modalities, in_chans, patch_size, grid_size, pool,
                           drop_path)


@register_model("mm_vit_nano", "ViT test-size trunk (dim 32, depth 2, 2 heads) shared by "
                f"image and log-mel inputs; {_MM_VIT_ARGS}", multimodal=True)
def mm_vit_nano(in_chans: int = 1, patch_size: int | tuple[int, int] = 4,
                grid_size: int | tuple[int, int] = 8, pool: str = "cls",
                drop_path: float = 0.0,
                modalities: Mapping[str, int] | None = None) -> MultiModalBackbone:
    return _multimodal_vit(32, 2, 2, modalities, in_chans, patch_size, grid_size, pool,
                           drop_path)
