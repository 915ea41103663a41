"""RepVGG and RepGhostNet: the deploy form computes what the training form computes."""

import pytest
import torch

from avfed import models
from avfed.models.reparam import randomize_bn_stats, remaining_branches, reparameterize_model
from avfed.models.repghost import RepGhostModule, make_divisible, repghostnet
from avfed.models.repvgg import VGG_LAYOUTS, RepVGGBlock, repvgg


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["repvgg_tiny", "repghost_tiny"])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_deploy_form_matches_training_form(name, stem_stride):
    torch.manual_seed(0)
    net = models.create(name, in_chans=3, stem_stride=stem_stride)
    randomize_bn_stats(net, torch.Generator().manual_seed(1))
    net.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
    params_before = _param_count(net)
    assert remaining_branches(net), "the training form should have branches to fold"

    reparameterize_model(net)
    with torch.no_grad():
        after = net(x)
    assert before.shape == (3, net.num_features)
    assert _relative_error(after, before) < 1e-5
    assert remaining_branches(net) == []
    assert _param_count(net) < params_before


def test_tiny_repvgg_covers_identity_and_strided_blocks():
    net = models.create("repvgg_tiny")
    blocks = [m for m in net.modules() if isinstance(m, RepVGGBlock)]
    assert any(b.branch_identity is not None for b in blocks)
    assert any(b.stride == 2 and b.in_ch != b.out_ch for b in blocks)


def test_repvgg_block_folds_into_one_biased_conv():
    torch.manual_seed(0)
    block = RepVGGBlock(4, 4, 1)
    randomize_bn_stats(block, torch.Generator().manual_seed(2))
    block.eval()
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        block.reparameterize()  # a second call changes nothing
        got = block(x)
    assert block.deployed and block.fused is not None and block.fused.bias is not None
    assert not hasattr(block, "branch_3x3") and block.branch_identity is None
    assert _relative_error(got, expected) < 1e-5
    with pytest.raises(RuntimeError, match="already"):
        block.equivalent_kernel_bias()


def test_repghost_module_folds_the_identity_bn_into_the_depthwise_conv():
    torch.manual_seed(0)
    module = RepGhostModule(3, 6, relu=False)
    randomize_bn_stats(module, torch.Generator().manual_seed(3))
    module.eval()
    x = torch.randn(2, 3, 7, 7)
    with torch.no_grad():
        expected = module(x)
        module.reparameterize()
        got = module(x)
    assert module.cheap.groups == 6 and module.cheap.bias is not None
    assert module.fusion_bn is None and module.cheap_bn is None
    assert _relative_error(got, expected) < 1e-5
    with pytest.raises(RuntimeError, match="already"):
        module.equivalent_kernel_bias()


def test_published_widths():
    assert VGG_LAYOUTS["a0"].channels() == (48, 48, 96, 192, 1280)
    assert VGG_LAYOUTS["b1"].channels() == (64, 128, 256, 512, 2048)
    a0 = models.create("repvgg_a0")
    assert a0.num_features == 1280
    assert [len(s) for s in (a0.stage1, a0.stage2, a0.stage3, a0.stage4)] == [2, 4, 14, 1]
    ghost = models.create("repghost_0_5x")
    assert ghost.stem[0].out_channels == 8 and ghost.num_features == 1280
    assert make_divisible(36 * 0.5) == 20  # rounding up to a multiple of 4


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="layout"):
        repvgg("c9")
    with pytest.raises(ValueError, match="layout"):
        repghostnet("3x")
    with pytest.raises(ValueError, match="stem_stride"):
        models.create("repvgg_tiny", stem_stride=3)
    with pytest.raises(ValueError, match="stem_stride"):
        models.create("repghost_tiny", stem_stride=4)
    with pytest.raises(ValueError, match="in_chans"):
        models.create("repvgg_tiny", in_chans=0)


def _stem_stride(model: torch.nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return first.stride[0]


@pytest.mark.parametrize("name", ["repvgg_a0", "repvgg_b1", "repghost_0_5x"])
def test_published_layouts_default_to_the_stride_2_stem(name):
    assert _stem_stride(models.create(name)) == 2
    cifar = models.create(name, stem_stride=1)  # the CIFAR-style stem, on request
    assert _stem_stride(cifar) == 1


def test_tiny_layouts_keep_the_cifar_stem_and_builders_follow_the_layout():
    assert _stem_stride(models.create("repvgg_tiny")) == 1
    assert _stem_stride(models.create("repghost_tiny")) == 1
    assert _stem_stride(repvgg("a0")) == 2 and _stem_stride(repvgg("tiny")) == 1
    assert _stem_stride(repghostnet("0_5x")) == 2 and _stem_stride(repghostnet("tiny")) == 1
    # 64×64 input: five stride-2 stages end at 2×2, a stride-1 stem at 4×4
    x = torch.randn(1, 3, 64, 64)
    for stride, side in ((2, 2), (1, 4)):
        net = models.create("repvgg_a0", stem_stride=stride).eval()
        stage4 = net.stage4(net.stage3(net.stage2(net.stage1(net.stage0(x)))))
        assert stage4.shape[-2:] == (side, side)
