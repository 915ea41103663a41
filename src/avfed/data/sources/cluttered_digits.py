"""The built-in ``cluttered_digits`` corpus: the real handwritten digits, hard to see.

scikit-learn's 1,797 scanned digits are easy for raw pixels (a cosine kNN on the
flattened 32×32 image scores ~0.97), so a learned representation cannot show what it
is worth on them. Here every scan is rendered the way a photographed digit would be
seen: at a random scale, rotation and position, in a random colour, over a crop of a
natural photograph or texture (the images bundled with scikit-image, nothing is
downloaded), with bars occluding parts of it, blur and sensor noise. The class is
the digit alone; everything else is a nuisance a representation has to become
invariant to, which the raw pixels are not.

Rendering is vectorised: one ``grid_sample`` call places every glyph, one call crops
every background out of an atlas of the photographs, so a corpus takes about a second
and needs no cache. The same seed gives the same images bit for bit; the split
is by scan (each scan is rendered ``renders`` times, all on the same side), so no
test digit is a re-rendering of a training digit.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# scikit-learn's digits and its stratified split, without importing scikit-learn
from avfed.data.sources.image_digits import load_digit_scans as load_digits
from avfed.data.sources.image_digits import train_test_split
from avfed.data.types import ImageSet

CLASSES = [str(d) for d in range(10)]
# photographs and textures shipped inside scikit-image (no download)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "brick", "grass", "gravel", "camera", "coins", "moon",
          "page", "text", "clock", "cell")
_TILE = 256  # side of one photograph in the background atlas
_GLYPH = 32  # side the 8×8 scans are upscaled to before they are placed


@dataclass(frozen=True)
class Clutter:
    """How hard the rendering is; the defaults are the built-in corpus.

    The defaults were chosen by measurement (``docs/ssl.md``, "Built-in data"): every
    nuisance that defeats raw pixels is kept (place, scale, rotation, polarity, textured
    backgrounds, occluders, blur, noise), but none that two augmented views of one image
    share so plainly that a contrastive model matches the views by it, not by the digit.
    Random RGB colours and strong photographic texture were such shortcuts: with them a
    centralised SimCLR reached kNN 0.17 after 20 epochs, against 0.30 without them.
    """

    scale: tuple[float, float] = (0.4, 0.75)  # glyph side / image side
    max_rotation_deg: float = 20.0
    background_zoom: tuple[float, float] = (0.08, 0.35)  # crop side / photograph side
    # the photograph's contrast around its mean: textured enough to fool raw pixels,
    # faint enough that the digit stays the most distinctive thing in the image
    background_contrast: tuple[float, float] = (0.1, 0.3)
    ink_alpha: tuple[float, float] = (0.75, 1.0)
    min_contrast: float = 0.3  # ink vs background mean luminance, at least
    occluders: int = 1  # at most this many bars per image
    blur_sigma: tuple[float, float] = (0.0, 0.7)
    noise_std: tuple[float, float] = (0.0, 0.04)
    # 1: random RGB colours; 0: grey levels (light or dark ink, either polarity)
    saturation: float = 0.0


# the glyph fills the frame upright, as in image_digits; only the background and colour vary
CLEAN = Clutter(scale=(1.0, 1.0), max_rotation_deg=0.0, ink_alpha=(1.0, 1.0), occluders=0,
                blur_sigma=(0.0, 0.0), noise_std=(0.0, 0.0), saturation=1.0)
# the first version of the corpus: random colours over strongly textured photographs
COLOURFUL = Clutter(scale=(0.5, 0.95), background_contrast=(0.3, 0.7), blur_sigma=(0.0, 1.0),
                    noise_std=(0.0, 0.05), saturation=1.0)


@functools.cache
def _photo_atlas() -> torch.Tensor:
    """All photographs as square RGB tiles side by side: ``[3, T, T * len(PHOTOS)]``."""
    from skimage import data as skdata

    tiles = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PHOTOS:
            img = np.asarray(getattr(skdata, name)())
            if img.ndim == 2:
                img = np.stack([img] * 3, axis=-1)
            img = img[..., :3].astype(np.float32) / 255.0
            side = min(img.shape[:2])
            top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
            square = img[top : top + side, left : left + side]
            tiles.append(cv2.resize(square, (_TILE, _TILE), interpolation=cv2.INTER_AREA))
    atlas = np.concatenate(tiles, axis=1)  # [T, T * P, 3]
    return torch.from_numpy(atlas).permute(2, 0, 1).contiguous()


def _glyphs() -> tuple[torch.Tensor, np.ndarray]:
    """The scans, upscaled smoothly to 32×32, as ink masks in ``[0, 1]``, and labels."""
    bunch = load_digits()
    small = (bunch.images / 16.0).astype(np.float32)
    big = np.stack([cv2.resize(img, (_GLYPH, _GLYPH), interpolation=cv2.INTER_CUBIC)
                    for img in small])
    return torch.from_numpy(np.clip(big, 0.0, 1.0)).unsqueeze(1), bunch.target.astype(np.int64)


def _uniform(gen: torch.Generator, n: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=gen)


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype)
    return (rgb * weights.view(1, 3, *([1] * (rgb.ndim - 2)))).sum(1)


def _desaturate(rgb: torch.Tensor, saturation: float) -> torch.Tensor:
    grey = _luminance(rgb).unsqueeze(1)
    return grey + saturation * (rgb - grey)


def _backgrounds(atlas: torch.Tensor, n: int, size: int, clutter: Clutter,
                 gen: torch.Generator) -> torch.Tensor:
    """``n`` random crops (zoom, position, rotation, mirror, colour cast) of the atlas."""
    photos = atlas.shape[2] // _TILE
    which = torch.randint(photos, (n,), generator=gen).float()
    zoom = _uniform(gen, n, clutter.background_zoom)  # crop half-side in tile units
    angle = _uniform(gen, n, (-math.pi, math.pi))
    margin = zoom * math.sqrt(2)  # a rotated crop stays inside its tile
    cx = (margin + (1 - 2 * margin) * torch.rand(n, generator=gen)) * 2 - 1  # tile coords
    cy = (margin + (1 - 2 * margin) * torch.rand(n, generator=gen)) * 2 - 1
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    # tile coordinates -> atlas coordinates: x spans the whole row of tiles
    sx = 1.0 / photos
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip * sx, -sin * sx
    theta[:, 0, 2] = (cx + 2 * which + 1) * sx - 1
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * flip, cos, cy
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    flat = grid.view(1, n * size, size, 2)
    crops = F.grid_sample(atlas.unsqueeze(0), flat, mode="bilinear", align_corners=False)
    crops = crops.view(3, n, size, size).permute(1, 0, 2, 3)
    # a colour cast per image (channel gains, a brightness shift), then the contrast
    gains = 0.5 + torch.rand(n, 3, 1, 1, generator=gen)
    shift = 0.3 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    crops = (crops * gains + shift).clamp(0, 1)
    mean = crops.mean((1, 2, 3), keepdim=True)
    contrast = _uniform(gen, n, clutter.background_contrast).view(n, 1, 1, 1)
    return mean + contrast * (crops - mean)


def _place_glyphs(glyphs: torch.Tensor, size: int, clutter: Clutter,
                  gen: torch.Generator) -> torch.Tensor:
    """Each glyph scaled, rotated and moved inside a ``size``² frame: ``[n, 1, s, s]``."""
    n = len(glyphs)
    scale = _uniform(gen, n, clutter.scale)
    aspect = _uniform(gen, n, (0.85, 1.15)) if clutter.max_rotation_deg > 0 else torch.ones(n)
    angle = _uniform(gen, n, (-1.0, 1.0)) * math.radians(clutter.max_rotation_deg)
    room = (1 - scale).clamp_min(0)
    tx, ty = room * _uniform(gen, n, (-1, 1)), room * _uniform(gen, n, (-1, 1))
    # output -> glyph coordinates: the inverse of (scale, rotate, translate)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = scale * aspect, scale / aspect
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos / sx, sin / sx
    theta[:, 1, 0], theta[:, 1, 1] = -sin / sy, cos / sy
    theta[:, 0, 2] = -(cos * tx + sin * ty) / sx
    theta[:, 1, 2] = -(-sin * tx + cos * ty) / sy
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    return F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False).clamp(0, 1)


def _occluders(n: int, size: int, most: int, gen: torch.Generator) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """Up to ``most`` opaque bars per image: a coverage mask and its colour."""
    coverage = torch.zeros(n, 1, size, size)
    colour = torch.zeros(n, 3, size, size)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(),
                            indexing="ij")
    for _ in range(most):
        present = (torch.rand(n, generator=gen) < 0.6).float().view(n, 1, 1)
        cx, cy = torch.rand(n, generator=gen) * size, torch.rand(n, generator=gen) * size
        angle = torch.rand(n, generator=gen) * math.pi
        half_len = size * _uniform(gen, n, (0.15, 0.45))
        half_width = size * _uniform(gen, n, (0.03, 0.08))
        dx, dy = xs - cx.view(n, 1, 1), ys - cy.view(n, 1, 1)
        along = dx * torch.cos(angle).view(n, 1, 1) + dy * torch.sin(angle).view(n, 1, 1)
        across = -dx * torch.sin(angle).view(n, 1, 1) + dy * torch.cos(angle).view(n, 1, 1)
        bar = ((along.abs() < half_len.view(n, 1, 1))
               & (across.abs() < half_width.view(n, 1, 1))).float() * present
        rgb = torch.rand(n, 3, 1, 1, generator=gen)
        colour = colour * (1 - bar.unsqueeze(1)) + rgb * bar.unsqueeze(1)
        coverage = torch.maximum(coverage, bar.unsqueeze(1))
    return coverage, colour


def _blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with one sigma per image (5×5 kernels, one grouped convolution)."""
    n, c = images.shape[:2]
    offsets = torch.arange(5).float() - 2
    s = sigmas.clamp_min(1e-3).view(n, 1)
    kernel_1d = torch.exp(-(offsets.view(1, 5) ** 2) / (2 * s**2))
    kernel_1d = kernel_1d / kernel_1d.sum(1, keepdim=True)
    kernel = (kernel_1d.view(n, 5, 1) * kernel_1d.view(n, 1, 5)).repeat_interleave(c, 0)
    padded = F.pad(images.reshape(1, n * c, *images.shape[2:]), (2, 2, 2, 2), mode="reflect")
    out = F.conv2d(padded, kernel.unsqueeze(1), groups=n * c)
    return out.view_as(images)


def render(glyphs: torch.Tensor, size: int, seed: int,
           clutter: Clutter = Clutter()) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ink masks ``[n, 1, 32, 32]`` as cluttered RGB images ``[n, 3, size, size]``.

    Also returns where the digit's ink ended up (``[n, 1, size, size]``, before
    occlusion), so a check can see that each image shows its digit.
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = len(glyphs)
    background = _backgrounds(_photo_atlas(), n, size, clutter, gen)
    ink = _place_glyphs(glyphs, size, clutter, gen)
    # the ink's colour: random, but kept apart from the background's mean luminance
    colour = torch.rand(n, 3, generator=gen)
    bg_lum = _luminance(background).mean((1, 2))
    too_close = (_luminance(colour) - bg_lum).abs() < clutter.min_contrast
    colour = torch.where(too_close.view(n, 1), 1 - colour, colour)
    still_close = (_luminance(colour) - bg_lum).abs() < clutter.min_contrast
    far = torch.where(bg_lum > 0.5, 0.0, 1.0).view(n, 1).expand(n, 3)
    colour = torch.where(still_close.view(n, 1), 0.5 * colour + 0.5 * far, colour)
    if clutter.saturation < 1.0:
        background = _desaturate(background, clutter.saturation)
        colour = _desaturate(colour.view(n, 3, 1, 1), clutter.saturation).view(n, 3)
    alpha = _uniform(gen, n, clutter.ink_alpha).view(n, 1, 1, 1) * ink
    image = background * (1 - alpha) + colour.view(n, 3, 1, 1) * alpha
    if clutter.occluders > 0:
        coverage, bar_colour = _occluders(n, size, clutter.occluders, gen)
        image = image * (1 - coverage) + bar_colour * coverage
    sigma = _uniform(gen, n, clutter.blur_sigma)
    if float(sigma.max()) > 0:
        image = _blur(image, sigma)
    noise = _uniform(gen, n, clutter.noise_std).view(n, 1, 1, 1)
    image = image + noise * torch.randn(image.shape, generator=gen)
    return image.clamp(0, 1), ink


def load_cluttered_digits(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0,
                          renders: int = 1,
                          clutter: Clutter = Clutter()) -> tuple[ImageSet, ImageSet]:
    """A (train, test) split of RGB images in ``[0, 1]``, stratified by digit and split
    by scan; ``groups`` holds each image's scan index in scikit-learn's digits."""
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 for cluttered digits, got {image_size}")
    if renders < 1:
        raise ValueError(f"renders must be >= 1, got {renders}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    glyphs, labels = _glyphs()
    scans = np.tile(np.arange(len(labels)), renders)
    images, _ = render(glyphs[torch.from_numpy(scans)], image_size, seed, clutter)
    full = ImageSet(images, labels[scans], CLASSES, groups=scans)
    train_scans, test_scans = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels)
    is_test = np.isin(scans, test_scans)
    return full.subset(np.flatnonzero(~is_test)), full.subset(np.flatnonzero(is_test))
