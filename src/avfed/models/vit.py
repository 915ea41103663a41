"""Vision Transformer for images and log-mel spectrograms (non-square inputs).

The same encoder reads an image ``[B, C, H, W]`` or a spectrogram ``[B, 1, F, T]``: the
patch grid is ``(H / ph, W / pw)`` for ``img_size=(H, W)`` and ``patch_size=(ph, pw)``,
so a 128×1024 spectrogram with 16×16 patches becomes an 8×64 grid. Position embeddings
are learned for the configured grid and resized bicubically when an input of another
size arrives (clips of a different length, images at another resolution), which is what
lets one pretrained model accept variable-length audio. Inputs whose sides are not a
multiple of the patch size are zero-padded at the bottom/right so no pixels are lost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avfed.models.registry import register_model
from avfed.models.van import DropPath

POOLS = ("cls", "mean")


def pair_of_ints(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """``n`` → ``(n, n)``; a 2-sequence (a YAML list, say) → a tuple; anything else raises."""
    pair: tuple = ()
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, tuple | list):
        pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them; got {value!r}")
    return pair  # type: ignore[return-value]


class PatchEmbed(nn.Module):
    """Non-overlapping ``ph×pw`` patches → tokens ``[B, N, dim]`` and their grid ``(gh, gw)``.

    Ragged edges are zero-padded up to a whole patch rather than cropped.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: tuple[int, int]) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return math.ceil(height / self.patch_size[0]), math.ceil(width / self.patch_size[1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected input [B, {self.in_chans}, H, W]; got shape "
                             f"{tuple(x.shape)}")
        gh, gw = self.grid(x.shape[2], x.shape[3])
        pad_h, pad_w = gh * self.patch_size[0] - x.shape[2], gw * self.patch_size[1] - x.shape[3]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.proj(x).flatten(2).transpose(1, 2), (gh, gw)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention over all tokens with ``heads`` heads."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU hidden layer."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT encoder returning the final-normed CLS token or the mean of the patch tokens.

    The CLS token carries no separate position embedding: a learned token plus a learned
    constant is just another learned token.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224,
                 patch_size: int | tuple[int, int] = 16, in_chans: int = 3, dim: int = 192,
                 depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, pool: str = "cls",
                 drop_path: float = 0.0) -> None:
        super().__init__()
        img = pair_of_ints(img_size, "img_size")
        patch = pair_of_ints(patch_size, "patch_size")
        if img[0] % patch[0] or img[1] % patch[1]:
            raise ValueError(f"img_size {img} must be a multiple of patch_size {patch}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}")
        if in_chans < 1 or dim < 1 or depth < 1 or heads < 1:
            raise ValueError("in_chans, dim, depth and heads must be >= 1; got "
                             f"{in_chans}, {dim}, {depth}, {heads}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1); got {drop_path}")
        self.img_size, self.pool = img, pool
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.grid_size = (img[0] // patch[0], img[1] // patch[1])
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1], dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_ratio, r) for r in rates])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.num_features = dim
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings ``[1, gh·gw, dim]`` for a ``grid`` of patches."""
        return resize_position_table(self.pos_embed, self.grid_size, grid)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input → patch tokens with their position embeddings added."""
        tokens, grid = self.patch_embed(x)
        return tokens + self.position_embedding(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return encode_tokens(self.embed(x), self.cls_token, self.blocks, self.norm)


def resize_position_table(table: torch.Tensor, table_grid: tuple[int, int],
                          grid: tuple[int, int]) -> torch.Tensor:
    """A learned ``[1, gh·gw, dim]`` table for ``table_grid``, as a table for ``grid``.

    The table's own grid returns it unchanged; any other grid gets it resized bicubically
    as a 2-D map, so neighbouring patches keep similar codes.
    """
    if grid == table_grid:
        return table
    dim = table.shape[-1]
    image = table.reshape(1, *table_grid, dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=grid, mode="bicubic", align_corners=False)
    return image.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim)


def encode_tokens(tokens: torch.Tensor, cls_token: torch.Tensor | None, blocks: nn.Module,
                  norm: nn.Module) -> torch.Tensor:
    """The transformer body: prepend CLS (if any), run the blocks, normalise, pool.

    Returns the CLS token, or the mean of the patch tokens when there is no CLS token.
    """
    if cls_token is not None:
        tokens = torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
    tokens = norm(blocks(tokens))
    return tokens[:, 0] if cls_token is not None else tokens.mean(dim=1)


_VIT_ARGS = "args: img_size=(H, W), patch_size, pool ('cls'|'mean'), drop_path"


@register_model("vit_tiny", f"ViT-Tiny, dim 192, depth 12, 3 heads, MLP 4×; {_VIT_ARGS}")
def vit_tiny(in_chans: int = 3, img_size: int | tuple[int, int] = 224,
             patch_size: int | tuple[int, int] = 16, pool: str = "cls",
             drop_path: float = 0.0) -> VisionTransformer:
    return VisionTransformer(img_size, patch_size, in_chans, dim=192, depth=12, heads=3,
                             pool=pool, drop_path=drop_path)


@register_model("vit_nano", f"ViT test size, dim 32, depth 2, 2 heads, MLP 4×; {_VIT_ARGS}")
def vit_nano(in_chans: int = 3, img_size: int | tuple[int, int] = 32,
             patch_size: int | tuple[int, int] = 8, pool: str = "cls",
             drop_path: float = 0.0) -> VisionTransformer:
    return VisionTransformer(img_size, patch_size, in_chans, dim=32, depth=2, heads=2,
                             pool=pool, drop_path=drop_path)
