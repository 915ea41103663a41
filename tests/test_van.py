"""VAN backbone, LKA/LSKA attention: shapes, training step, receptive fields, validation."""

import pytest
import torch

from avfed import models
from avfed.models.van import KERNEL_SPLITS, LKA, LSKA, DropPath, kernel_split


def _centre_receptive_field(module: torch.nn.Module, size: int) -> torch.Tensor:
    """Boolean [size, size] mask of input pixels that the attention map's centre depends on."""
    torch.manual_seed(0)
    module = module.double()
    x = torch.randn(1, module.conv_mix.in_channels, size, size, dtype=torch.double,
                    requires_grad=True)
    attn = module.attention_map(x)
    attn[0, :, size // 2, size // 2].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def _centred_window(size: int, k: int) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    lo = size // 2 - k // 2
    mask[lo:lo + k, lo:lo + k] = True
    return mask


@pytest.mark.parametrize("k", [7, 11])
def test_lska_centre_output_sees_exactly_a_k_by_k_window(k):
    size = k + 8
    mask = _centre_receptive_field(LSKA(2, kernel_size=k), size)
    assert torch.equal(mask, _centred_window(size, k))


def test_lka_receptive_field_is_23():
    size = 31
    mask = _centre_receptive_field(LKA(2), size)
    assert torch.equal(mask, _centred_window(size, 5 + (7 - 1) * 3))


def test_every_table_entry_has_the_effective_kernel_it_is_filed_under():
    for k, split in KERNEL_SPLITS.items():
        assert split.plain + (split.dilated - 1) * split.dilation == k
        assert split.plain == 2 * split.dilation - 1


def test_lska_at_23_has_fewer_parameters_than_lka():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(LSKA(64, 23)) < count(LKA(64, 23))
    assert count(models.create("van_tiny", attention="lska")) < count(models.create("van_tiny"))


def test_attention_gates_its_input_elementwise():
    torch.manual_seed(0)
    for module in (LKA(3, 7), LSKA(3, 11)):
        x = torch.randn(2, 3, 9, 9)
        assert torch.allclose(module(x), x * module.attention_map(x), atol=1e-6)


@pytest.mark.parametrize("attention", ["lka", "lska"])
def test_van_nano_forward_backward_on_digits_and_one_channel(attention):
    torch.manual_seed(0)
    net = models.create("van_nano", attention=attention, kernel_size=11, drop_path=0.1)
    x = torch.randn(4, 3, 32, 32)
    feats = net(x)
    assert feats.shape == (4, net.num_features) == (4, 64)
    feats.pow(2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing
    assert net.stages[0].embed.proj.weight.grad.abs().sum() > 0
    mono = models.create("van_nano", in_chans=1, attention=attention).eval()
    assert mono(torch.randn(2, 1, 32, 48)).shape == (2, 64)


def test_van_nano_at_224_and_the_registered_sizes_report_their_width():
    net = models.create("van_nano").eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 64)
    assert models.create("van_tiny").num_features == 256
    assert models.create("van_small", attention="lska", kernel_size=35).num_features == 512


def test_eval_forward_is_deterministic_with_drop_path():
    torch.manual_seed(0)
    net = models.create("van_nano", drop_path=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), net(x))


def test_drop_path_keeps_or_zeroes_whole_samples_and_rescales():
    torch.manual_seed(0)
    drop = DropPath(0.5).train()
    out = drop(torch.ones(64, 3, 2, 2))
    per_sample = out.reshape(64, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


@pytest.mark.parametrize("k", [5, 9, 24, 0])
def test_unsupported_kernel_size_lists_the_valid_ones(k):
    with pytest.raises(ValueError, match=r"kernel_size must be one of 7, 11, 23, 35, 41, 53"):
        models.create("van_nano", attention="lska", kernel_size=k)
    with pytest.raises(ValueError, match="kernel_size"):
        kernel_split(k)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="attention must be one of lka, lska"):
        models.create("van_nano", attention="mhsa")
    with pytest.raises(ValueError, match="drop_path"):
        models.create("van_nano", drop_path=1.0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        models.create("van_nano")(torch.randn(3, 32, 32))
