"""AudioInceptionNeXt / AudioRepInceptionNeXt: shapes, training, exact re-parameterization."""

import copy

import pytest
import torch

from avfed import models
from avfed.models.audio_inceptionnext import MultiKernelDW
from avfed.models.reparam import randomize_bn_stats, remaining_branches, reparameterize_model
from avfed.models.resnet import FrequencyTimePool


@pytest.mark.parametrize("name", ["audio_inceptionnext_tiny", "audio_rep_inceptionnext_tiny"])
def test_tiny_models_train_on_small_log_mels(name):
    net = models.create(name, width=8)
    x = torch.randn(3, 1, 64, 48)
    out = net(x)
    assert out.shape == (3, net.num_features) and net.num_features == 64
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_multi_branch_folds_into_one_kernel_exactly():
    torch.manual_seed(0)
    block = MultiKernelDW(6, (21, 11, 3), "time")
    randomize_bn_stats(block, torch.Generator().manual_seed(1))
    block.eval()
    x = torch.randn(2, 6, 5, 40)
    before = block(x)
    block.reparameterize()
    assert block.fused is not None and block.fused.kernel_size == (1, 21)
    assert torch.allclose(block(x), before, atol=1e-5)


def test_rep_model_deploy_form_equals_train_form():
    torch.manual_seed(0)
    train = models.create("audio_rep_inceptionnext_tiny", width=8)
    randomize_bn_stats(train, torch.Generator().manual_seed(2))
    train.eval()
    deploy = reparameterize_model(copy.deepcopy(train))
    x = torch.randn(2, 1, 64, 96)
    reference = train(x)
    assert remaining_branches(train) and not remaining_branches(deploy)
    scale = reference.abs().max()
    assert (deploy(x) - reference).abs().max() <= 1e-5 * scale
    assert sum(p.numel() for p in deploy.parameters()) < sum(p.numel() for p in train.parameters())


def test_base_variants_have_the_published_layout():
    net = models.create("audio_rep_inceptionnext")
    assert [len(s) for s in net.stages] == [3, 4, 6, 3] and net.num_features == 512
    assert net.stem[0].kernel_size == (7, 5) and net.stem[0].stride == (2, 2)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="depths and widths"):
        models.create("audio_inceptionnext_tiny", depths=(1, 1))
    with pytest.raises(ValueError, match="odd"):
        MultiKernelDW(4, (4, 3), "freq")
    with pytest.raises(ValueError, match="log-mel batch"):
        models.create("audio_inceptionnext_tiny")(torch.randn(1, 64, 48))


def test_folding_keeps_the_model_dtype():
    torch.manual_seed(0)
    train = models.create("audio_rep_inceptionnext_tiny", width=8).double()
    randomize_bn_stats(train, torch.Generator().manual_seed(3))
    train.eval()
    deploy = reparameterize_model(copy.deepcopy(train))
    x = torch.randn(2, 1, 64, 96, dtype=torch.float64)
    assert (deploy(x) - train(x)).abs().max() <= 1e-10  # float32 kernels: dtype error
    fused = [m.fused for m in deploy.modules() if isinstance(m, MultiKernelDW)]
    assert fused and all(f.weight.dtype == torch.float64 for f in fused)


def test_folding_twice_is_a_no_op():
    torch.manual_seed(0)
    net = models.create("audio_rep_inceptionnext_tiny", width=8)
    randomize_bn_stats(net, torch.Generator().manual_seed(4))
    net.eval()
    x = torch.randn(2, 1, 64, 96)
    reparameterize_model(net)
    once = net(x)
    blocks = [m for m in net.modules() if isinstance(m, MultiKernelDW)]
    kernels = [b.fused.weight.clone() for b in blocks]
    for block in blocks:
        block.reparameterize()  # called directly, bypassing reparameterize_model's check
    reparameterize_model(net)
    assert all(torch.equal(b.fused.weight, k) for b, k in zip(blocks, kernels, strict=True))
    assert torch.equal(net(x), once)


def test_frequency_pooling_keeps_bands_and_ignores_where_in_time():
    """``pool="frequency"``: one feature per (channel, band, mean|max); moving frames
    around leaves the features alone, swapping bands does not."""
    torch.manual_seed(0)
    pool = FrequencyTimePool(freq_bins=5)
    x = torch.randn(2, 8, 5, 9)
    feats = pool(x)
    assert feats.shape == (2, 8 * 5 * 2)
    assert torch.allclose(pool(x[..., torch.randperm(9)]), feats, atol=1e-6)
    assert not torch.allclose(pool(x.flip(2)), feats, atol=1e-3)
    net = models.create("resnet10_cifar", in_chans=1, width=4, pool="frequency", freq_bins=5)
    out = net(torch.randn(3, 1, 40, 63))
    assert out.shape == (3, net.num_features) and net.num_features == 32 * 5 * 2


@pytest.mark.parametrize("kwargs, message", [({"pool": "mean"}, "pool must be one of"),
                                             ({"pool": "frequency", "freq_bins": 0},
                                              "freq_bins must be >= 1")])
def test_resnet_pooling_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.create("resnet10_cifar", in_chans=1, width=4, **kwargs)
