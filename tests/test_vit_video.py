"""ViT (images and spectrograms, position-embedding resizing) and the small video backbones."""

import pytest
import torch
from torch import nn

from avfed import models
from avfed.models.video import Conv2Plus1d, factorised_width
from avfed.models.vit import MultiHeadSelfAttention


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadSelfAttention(16, heads=4)
    reference = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv.weight)
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.proj.weight)
        reference.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 7, 16)
    expected, _ = reference(x, x, x, need_weights=False)
    assert torch.allclose(ours(x), expected, atol=1e-5)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_nano_forward_backward(pool):
    torch.manual_seed(0)
    net = models.create("vit_nano", pool=pool, drop_path=0.1)
    feats = net(torch.randn(3, 3, 32, 32))
    assert feats.shape == (3, net.num_features) == (3, 32)
    (feats * torch.randn_like(feats)).sum().backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None]


def test_spectrogram_input_with_non_square_patches_and_another_length():
    torch.manual_seed(0)
    net = models.create("vit_nano", in_chans=1, img_size=(16, 48), patch_size=(8, 4)).eval()
    assert net.grid_size == (2, 12)
    with torch.no_grad():
        assert net(torch.randn(2, 1, 16, 48)).shape == (2, 32)
        assert net(torch.randn(2, 1, 16, 70)).shape == (2, 32)  # ragged: padded to 72


def test_position_embedding_is_the_table_at_the_configured_grid_and_resized_otherwise():
    torch.manual_seed(0)
    net = models.create("vit_nano", img_size=(16, 32), patch_size=8)
    assert net.position_embedding((2, 4)) is net.pos_embed
    resized = net.position_embedding((4, 8))
    assert resized.shape == (1, 32, net.num_features)
    with torch.no_grad():  # a table constant along the grid stays constant when resized
        net.pos_embed.copy_(torch.arange(32.0).repeat(1, 8, 1))
    assert torch.allclose(net.position_embedding((3, 5)), torch.arange(32.0).expand(1, 15, 32),
                          atol=1e-5)
    # and the model really uses it: an input twice the size runs and gets gradients there
    out = net.eval()(torch.randn(1, 3, 32, 64))
    (out * torch.randn_like(out)).sum().backward()  # a plain sum of a LayerNorm output is flat
    assert net.pos_embed.grad.abs().sum() > 0


def test_vit_tiny_has_the_published_shape():
    net = models.create("vit_tiny")
    assert net.num_features == 192 and len(net.blocks) == 12
    assert net.blocks[0].attn.heads == 3 and net.blocks[0].mlp[0].out_features == 768
    assert net.grid_size == (14, 14)


def test_vit_bad_arguments_raise():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        models.create("vit_nano", img_size=(30, 32))
    with pytest.raises(ValueError, match="pool must be one of cls, mean"):
        models.create("vit_nano", pool="max")
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        models.create("vit_nano", patch_size=(8, 0))
    with pytest.raises(ValueError, match=r"expected input \[B, 3, H, W\]"):
        models.create("vit_nano")(torch.randn(1, 1, 32, 32))


def test_factorised_width_matches_the_parameters_of_the_full_kernel():
    # Tran et al. 2018: M = ⌊t·d²·Nin·Nout / (d²·Nin + t·Nout)⌋
    assert factorised_width(64, 64, 3, 3) == 144
    assert factorised_width(64, 128, 3, 3) == 230
    for n_in, n_out in [(8, 8), (16, 32), (64, 64), (3, 16)]:
        pair = Conv2Plus1d(n_in, n_out)
        conv_params = pair[0].weight.numel() + pair[3].weight.numel()
        full = 27 * n_in * n_out
        mid = factorised_width(n_in, n_out, 3, 3)
        assert conv_params == mid * (9 * n_in + 3 * n_out)
        # one more mid-channel would already exceed the 3×3×3 conv's parameters
        assert conv_params <= full < conv_params + 9 * n_in + 3 * n_out
        assert pair[0].out_channels == pair[3].in_channels == mid


@pytest.mark.parametrize("name", ["r3d_10", "r2plus1d_10"])
def test_video_nets_map_clips_to_pooled_features(name):
    torch.manual_seed(0)
    net = models.create(name, width=4)
    clip = torch.randn(2, 3, 8, 32, 32)
    feats = net(clip)
    assert feats.shape == (2, net.num_features) == (2, 32)
    feats.sum().backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None]
    assert models.create(name, in_chans=1, width=4).eval()(torch.randn(1, 1, 4, 16, 16)).shape \
        == (1, 32)
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        net(torch.randn(2, 3, 32, 32))


def test_r2plus1d_keeps_parameters_close_to_r3d():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    r3d, r21d = models.create("r3d_10", width=16), models.create("r2plus1d_10", width=16)
    assert abs(count(r21d) - count(r3d)) / count(r3d) < 0.02
    with pytest.raises(ValueError, match="width"):
        models.create("r3d_10", width=0)
