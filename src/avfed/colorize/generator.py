"""VCGAN's hybrid recurrent generator: a U-Net whose bottleneck also receives two global
features, one of the grayscale frame and one of the previous colorized frame warped to
the current one.

Two extractors (any registered backbone; the paper uses ImageNet ResNet-50s):

- the **global feature extractor** sees the grayscale frame: what is in the picture;
- the **placeholder feature extractor** sees the previous output, warped to this frame
  by optical flow: the recurrent feedback that lets frame *t* agree with frame *t − 1*.
  It sees that frame in colour (the reference code feeds it the frame's luminance); the
  colour of the previous output is what the feedback is meant to carry forward.

In **image mode** (the first training stage, and the first frame of a video) both get
the grayscale frame, so the network is an ordinary per-frame colorizer. Frame *t*'s
output depends on earlier frames through the placeholder input and nothing else: the
U-Net itself sees frame *t* only.

The network predicts chroma (Cb, Cr) and takes luminance from its input
(:mod:`avfed.colorize.color`), so an output is never darker or blurrier than its source.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avfed.colorize.color import compose


class SelfAttention(nn.Module):
    """SAGAN self-attention: every position attends to every other one; the residual
    weight ``gamma`` starts at 0, so a fresh block is the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, HW, C']
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)


@dataclass
class GeneratorSpec:
    """Everything needed to rebuild a generator (stored beside its weights).

    ``base`` is the first stage's channels (32 in the paper); ``depth`` the number of
    stride-2 stages before the bottleneck (the paper: five, to 1/32 of 256²; four suits
    64-pixel frames); ``attention`` how many of the first up-sampling stages end in
    self-attention (the paper: three); ``extractor`` / ``extractor_args`` the registered
    backbone used for both feature extractors, which see frames average-pooled by
    ``extractor_stride`` (their features are pooled globally anyway, and a CIFAR-style
    backbone at full resolution would cost more than the whole U-Net);
    ``image_size`` the training frame size.
    """

    base: int = 16
    depth: int = 4
    max_mult: int = 8
    attention: int = 2
    extractor: str = "resnet10_cifar"
    extractor_args: dict[str, Any] = field(default_factory=lambda: {"width": 8})
    extractor_stride: int = 2
    image_size: int = 64

    def __post_init__(self) -> None:
        for name in ("base", "depth", "max_mult", "extractor_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"generator {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.attention <= self.depth:
            raise ValueError(f"generator attention must be in [0, depth={self.depth}], "
                             f"got {self.attention}")

    @property
    def multiple(self) -> int:
        """Frame sides must be multiples of this (one halving per stage)."""
        return 2 ** self.depth

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeneratorSpec:
        return cls(**json.loads(text))


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class VCGANGenerator(nn.Module):
    """U-Net main stream + global and placeholder feature extractors fused at the bottleneck."""

    def __init__(self, spec: GeneratorSpec, global_extractor: nn.Module,
                 placeholder_extractor: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        c = spec.base
        chans = [c * min(2 ** i, spec.max_mult) for i in range(spec.depth + 1)]
        self.stem = nn.Sequential(nn.Conv2d(1, c, 7, 1, 3), _act())
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), _act())
            for i in range(spec.depth))
        bottleneck = chans[-1]
        self.global_extractor = global_extractor
        self.placeholder_extractor = placeholder_extractor
        self.global_proj = nn.Linear(_features(global_extractor), bottleneck)
        self.placeholder_proj = nn.Linear(_features(placeholder_extractor), bottleneck)
        self.fuse = nn.Sequential(nn.Conv2d(3 * bottleneck, bottleneck, 3, 1, 1), _act())
        # up-sampling from the bottleneck back to full resolution, with skips
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.attn = nn.ModuleList()
        for stage, i in enumerate(reversed(range(spec.depth))):
            self.ups.append(nn.Sequential(nn.ConvTranspose2d(chans[i + 1], chans[i], 4, 2, 1),
                                          nn.ReLU(inplace=True)))
            self.merges.append(nn.Sequential(nn.Conv2d(2 * chans[i], chans[i], 3, 1, 1),
                                             nn.ReLU(inplace=True)))
            self.attn.append(SelfAttention(chans[i]) if stage < spec.attention
                             else nn.Identity())
        self.head = nn.Conv2d(c, 2, 3, 1, 1)
        self._init_main_stream()

    def _init_main_stream(self) -> None:
        """He initialisation of the U-Net's convolutions (the extractors keep their own):
        with PyTorch's default the signal shrinks at every layer, and an untrained
        network's output would hardly depend on its inputs at all."""
        for name, module in self.named_modules():
            if name.startswith(("global_extractor", "placeholder_extractor")):
                continue
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.kernel_size[0] > 1:
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # start near gray, not with saturated chroma

    def check_size(self, gray: torch.Tensor) -> None:
        h, w = gray.shape[-2:]
        m = self.spec.multiple
        if gray.ndim != 4 or gray.shape[1] != 1:
            raise ValueError(f"expected grayscale frames [B, 1, H, W], got {tuple(gray.shape)}")
        if h % m or w % m:
            raise ValueError(f"frame size {h}×{w} must be a multiple of {m} "
                             f"(generator depth {self.spec.depth})")

    def chroma(self, gray: torch.Tensor, placeholder: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Predicted (Cb, Cr) in [−0.5, 0.5] for ``gray`` ``[B, 1, H, W]`` in [0, 1].

        ``placeholder`` is the previous output warped to this frame (RGB in [0, 1]);
        ``None`` is image mode (the grayscale frame feeds both extractors).
        """
        self.check_size(gray)
        gray3 = gray.expand(-1, 3, -1, -1)
        if placeholder is None:
            placeholder = gray3
        x = self.stem(gray * 2.0 - 1.0)
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the bottleneck itself
        h, w = x.shape[-2:]
        g = self.global_proj(self.global_extractor(self._shrink(gray3)))
        g = g[:, :, None, None].expand(-1, -1, h, w)
        p = self.placeholder_proj(self.placeholder_extractor(self._shrink(placeholder)))
        p = p[:, :, None, None].expand(-1, -1, h, w)
        x = self.fuse(torch.cat([x, g, p], dim=1))
        for up, merge, attn in zip(self.ups, self.merges, self.attn, strict=True):
            x = attn(merge(torch.cat([up(x), skips.pop()], dim=1)))
        return 0.5 * torch.tanh(self.head(x))

    def _shrink(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.spec.extractor_stride
        return F.avg_pool2d(x, stride) if stride > 1 else x

    def forward(self, gray: torch.Tensor, placeholder: torch.Tensor | None = None
                ) -> torch.Tensor:
        """RGB in [0, 1]: the input luminance with the predicted chroma."""
        return compose(gray, self.chroma(gray, placeholder))


def _features(extractor: nn.Module) -> int:
    dim = getattr(extractor, "num_features", None)
    if not isinstance(dim, int):
        raise ValueError(f"{type(extractor).__name__} has no integer num_features; a feature "
                         "extractor must be a registered backbone (pooled features [B, D])")
    return dim


def build_generator(spec: GeneratorSpec) -> VCGANGenerator:
    """A generator with two fresh extractors of ``spec.extractor`` (3 input channels)."""
    from avfed import models

    def extractor() -> nn.Module:
        return models.create(spec.extractor, in_chans=3, **spec.extractor_args)

    return VCGANGenerator(spec, extractor(), extractor())


def colorize_clip(generator: VCGANGenerator, gray: torch.Tensor, flows: torch.Tensor | None,
                  *, recurrent: bool = True, detach_feedback: bool = True) -> torch.Tensor:
    """Colorize clips frame by frame: ``gray`` ``[B, T, 1, H, W]`` → RGB ``[B, T, 3, H, W]``.

    ``flows[:, t-1]`` (``[B, T-1, 2, H, W]``) is the backward flow from frame *t* to
    *t − 1*, used to warp the previous output onto frame *t* for the placeholder
    extractor. The first frame, and every frame when ``recurrent`` is false, is
    colorized in image mode. ``detach_feedback`` stops gradients through the fed-back
    frame (truncated back-propagation, one frame deep).
    """
    from avfed.colorize.flow import warp

    outputs: list[torch.Tensor] = []
    for t in range(gray.shape[1]):
        placeholder = None
        if recurrent and t > 0:
            if flows is None:
                raise ValueError("recurrent colorization needs the backward flows")
            prev = outputs[-1].detach() if detach_feedback else outputs[-1]
            placeholder = warp(prev, flows[:, t - 1])
        outputs.append(generator(gray[:, t], placeholder))
    return torch.stack(outputs, dim=1)
