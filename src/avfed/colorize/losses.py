"""VCGAN's training losses: L1, adversarial, optional perceptual, and the short-term and
dense long-term temporal losses.

The temporal losses compare an output frame with an earlier output warped onto it,
weighted by :func:`~avfed.colorize.flow.photometric_mask` of the *grayscale inputs*: where
the warped input does not match the current one (occlusion, wrong flow) the colours are
not asked to agree. The short-term term links each frame to the one before; the dense
long-term term links it to every frame at least two back in the clip, which is what
stops colours drifting slowly over a shot.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avfed.colorize.flow import photometric_mask, warp

GAN_LOSSES = ("wgan", "hinge")


def warped_l1(current: torch.Tensor, earlier: torch.Tensor, gray_current: torch.Tensor,
              gray_earlier: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``mean(M ⊙ |p_t − W(p_j)|)`` with ``M = exp(−50 (x_t − W(x_j))²)``; ``flow`` is
    from frame t to frame j (``[B, 2, H, W]``)."""
    mask = photometric_mask(gray_current, warp(gray_earlier, flow))
    return (mask * (current - warp(earlier, flow)).abs()).mean()


def short_term_loss(outputs: torch.Tensor, gray: torch.Tensor, flows: torch.Tensor,
                    detach_past: bool = True) -> torch.Tensor:
    """Mean over t ≥ 1 of :func:`warped_l1` between frame t and t − 1.

    ``outputs`` ``[B, T, 3, H, W]``, ``gray`` ``[B, T, 1, H, W]``, ``flows[:, t-1]`` the
    flow from t to t − 1. With ``detach_past`` the earlier frame is a fixed target.
    """
    terms = []
    for t in range(1, outputs.shape[1]):
        past = outputs[:, t - 1].detach() if detach_past else outputs[:, t - 1]
        terms.append(warped_l1(outputs[:, t], past, gray[:, t], gray[:, t - 1],
                               flows[:, t - 1]))
    return torch.stack(terms).mean() if terms else outputs.sum() * 0.0


def long_term_loss(outputs: torch.Tensor, gray: torch.Tensor,
                   pairs: list[tuple[int, int]], flows: torch.Tensor,
                   detach_past: bool = True) -> torch.Tensor:
    """The dense long-term loss: mean over every pair (t, j), j ≤ t − 2, of
    :func:`warped_l1` between frame t and frame j; ``flows[:, k]`` is pair k's flow from
    t to j (``[B, P, 2, H, W]``, pairs from :func:`~avfed.colorize.flow.long_term_pairs`)."""
    terms = []
    for k, (t, j) in enumerate(pairs):
        if j > t - 2:
            raise ValueError(f"long-term pair ({t}, {j}) is not at least two frames apart")
        past = outputs[:, j].detach() if detach_past else outputs[:, j]
        terms.append(warped_l1(outputs[:, t], past, gray[:, t], gray[:, j], flows[:, k]))
    return torch.stack(terms).mean() if terms else outputs.sum() * 0.0


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "wgan"
                       ) -> torch.Tensor:
    """The critic's loss on patch scores of real and generated frames."""
    if kind == "wgan":  # as the reference scripts: Wasserstein, Lipschitz by spectral norm
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown GAN loss '{kind}'; valid: {', '.join(GAN_LOSSES)}")


def generator_adversarial_loss(fake: torch.Tensor, kind: str = "wgan") -> torch.Tensor:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss '{kind}'; valid: {', '.join(GAN_LOSSES)}")
    return -fake.mean()


# VGG16's convolutions up to conv4_3 (torchvision's `features` indices 0–22)
_VGG16_TO_CONV4_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)


class PerceptualLoss(nn.Module):
    """L1 between VGG16 conv4_3 activations of output and target (the paper's λ 5 term).

    Only with weights the user supplies: a safetensors file of VGG16's ``features``
    (torchvision names such as ``features.0.weight``, or the same without the prefix).
    Nothing is downloaded; without a file the term is simply not used.
    """

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from safetensors.torch import load_file

        layers: list[nn.Module] = []
        cin = 3
        for item in _VGG16_TO_CONV4_3:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, 1, 1), nn.ReLU(inplace=True)]
                cin = int(item)
        self.features = nn.Sequential(*layers)
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VGG16 weights not found: {path}")
        state = load_file(str(path))
        state = {k.removeprefix("features."): v for k, v in state.items()}
        own = self.features.state_dict()
        missing = [k for k in own if k not in state or state[k].shape != own[k].shape]
        if missing:
            raise ValueError(f"{path} does not hold VGG16 features up to conv4_3 (missing or "
                             f"of another shape: {', '.join(missing[:4])})")
        self.features.load_state_dict({k: state[k] for k in own})
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.features.eval()  # a fixed feature extractor
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = self.features((output - self.mean) / self.std)
        b = self.features((target - self.mean) / self.std)
        return F.l1_loss(a, b)
