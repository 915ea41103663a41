"""RepOpt: RepOptSGD on the plain model retraces SGD on the CSLA multi-branch model."""

import copy
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from avfed import models
from avfed.models.repopt_models import RepOptConv2d, RepOptConvSpec, build_repopt_model
from avfed.optim import (
    RepOptSGD,
    build_csla_model,
    build_repopt_optimizer,
    decay_param_groups,
    default_scales,
    grad_multiplier,
    initialize_from_scales,
    load_csla_into_target,
    load_scales,
)
from avfed.optim.hypersearch import hyper_search, main
from import_graph import avfed_imports, find_cycle, import_graph, module_files


def _random_scales(name: str, seed: int) -> dict[str, torch.Tensor]:
    """Scales far from 1 and different per channel, so a wrong multiplier shows."""
    gen = torch.Generator().manual_seed(seed)
    shapes = default_scales(build_repopt_model(name))
    return {k: torch.rand(v.shape, generator=gen) * 1.5 + 0.25 for k, v in shapes.items()}


def _relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Worst relative difference over the floating-point tensors of two state dicts.

    Tensors whose entries all stay below 1e-6 are compared absolutely at that scale:
    they are exact zeros in theory (the bias of a BN followed by another BN gets no
    gradient), and round-off around zero has no meaningful relative size.
    """
    assert a.keys() == b.keys()
    gaps = [
        ((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-6)).item()
        for k in a
        if a[k].is_floating_point()
    ]
    return max(gaps)


def _twins(name: str, dtype: torch.dtype = torch.float64, seed: int = 0):
    """A CSLA model with random scales and the target model holding the same function.

    Double precision by default, so that trajectories are compared on their algebra
    rather than on float32 summation order (which differs between three branches and
    one fused kernel).
    """
    scales = _random_scales(name, seed)
    torch.manual_seed(seed)
    csla = build_csla_model(name, scales).to(dtype)
    with torch.no_grad():  # non-trivial identity gains (they start at the scales given)
        for key, value in csla.named_parameters():
            if key.endswith("scale_identity"):
                value.mul_(torch.linspace(0.5, 1.5, len(value), dtype=dtype))
    target = load_csla_into_target(build_repopt_model(name).to(dtype), csla)
    return csla, target, scales


def _train_both(name, csla, target, scales, steps, dtype=torch.float64, weight_decay=0.0,
                **sgd):
    """``steps`` SGD steps on the CSLA model and RepOptSGD steps on the target, same data."""
    csla_opt = torch.optim.SGD(decay_param_groups(csla, weight_decay), **sgd)
    repopt = build_repopt_optimizer(target, scales, weight_decay=weight_decay, **sgd)
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        x = torch.randn(4, 3, 16, 16, generator=gen, dtype=dtype)
        goal = torch.randn(4, target.num_features, generator=gen, dtype=dtype)
        for model, opt in ((csla, csla_opt), (target, repopt)):
            opt.zero_grad()
            _loss(model, x, goal).backward()
            opt.step()
    return load_csla_into_target(build_repopt_model(name).to(dtype), csla)


def _loss(model: nn.Module, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    return ((model(x) - goal) ** 2).mean()


@pytest.mark.parametrize("name", ["repopt_vgg_tiny", "repopt_ghost_tiny"])
@pytest.mark.parametrize(
    ("momentum", "weight_decay", "nesterov", "steps"),
    [(0.0, 0.0, False, 1), (0.9, 0.05, False, 3), (0.9, 0.05, True, 2)],
)
def test_repopt_sgd_on_plain_equals_sgd_on_csla(name, momentum, weight_decay, nesterov, steps):
    csla, target, scales = _twins(name)
    untouched = copy.deepcopy(target.state_dict())
    mapped = _train_both(name, csla, target, scales, steps, lr=0.1, momentum=momentum,
                         weight_decay=weight_decay, nesterov=nesterov).state_dict()
    assert _relative_gap(target.state_dict(), mapped) < 1e-5
    # the steps moved the weights far beyond that tolerance
    assert _relative_gap(untouched, mapped) > 1e-3


@pytest.mark.parametrize("name", ["repopt_vgg_tiny", "repopt_ghost_tiny"])
def test_one_float32_step_matches_on_the_plain_kernels(name):
    csla, target, scales = _twins(name, torch.float32)
    mapped = _train_both(name, csla, target, scales, 1, torch.float32, lr=0.1)
    for (key, module), twin in zip(target.named_modules(), mapped.modules(), strict=True):
        if isinstance(module, RepOptConv2d):
            gap = (module.weight - twin.weight).abs().max() / twin.weight.abs().max()
            assert gap < 1e-5, key


def test_plain_sgd_on_the_target_does_not_follow_the_csla_model():
    csla, target, _ = _twins("repopt_vgg_tiny")
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    goal = torch.randn(4, target.num_features, dtype=torch.float64)
    for model in (csla, target):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        _loss(model, x, goal).backward()
        opt.step()
    mapped = load_csla_into_target(build_repopt_model("repopt_vgg_tiny").double(), csla)
    assert _relative_gap(target.state_dict(), mapped.state_dict()) > 1e-3


def test_tiny_layouts_cover_every_branch_combination():
    specs = [m.spec for m in build_repopt_model("repopt_vgg_tiny").modules()
             if isinstance(m, RepOptConv2d)]
    assert any(s.has_identity for s in specs)
    assert any(s.stride == 2 and s.in_channels != s.out_channels for s in specs)
    ghost = [m.spec for m in build_repopt_model("repopt_ghost_tiny").modules()
             if isinstance(m, RepOptConv2d)]
    assert ghost and all(s.depthwise and s.has_identity and not s.has_1x1 for s in ghost)


def test_vgg_multiplier_matches_the_formula_entry_by_entry():
    spec = RepOptConvSpec(2, 2, 1, depthwise=False, has_1x1=True, has_identity=True,
                          init_scale=1.0)
    s3, s1 = torch.tensor([0.5, 2.0]), torch.tensor([1.5, 0.25])
    mult = grad_multiplier(spec, s3, s1)
    assert mult.shape == (2, 2, 3, 3)
    for o in range(2):
        for i in range(2):
            for h in range(3):
                for w in range(3):
                    centre = h == 1 and w == 1
                    expected = s3[o] ** 2 + (s1[o] ** 2 if centre else 0.0)
                    expected += 1.0 if centre and o == i else 0.0
                    assert mult[o, i, h, w].item() == pytest.approx(expected.item())


def test_strided_vgg_multiplier_has_no_identity_term():
    spec = RepOptConvSpec(2, 3, 2, depthwise=False, has_1x1=True, has_identity=False,
                          init_scale=1.0)
    s3, s1 = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([1.5, 0.25, 3.0])
    mult = grad_multiplier(spec, s3, s1)
    assert torch.allclose(mult[:, :, 1, 1], (s3**2 + s1**2).reshape(3, 1).expand(3, 2))
    assert torch.allclose(mult[:, :, 0, 2], (s3**2).reshape(3, 1).expand(3, 2))
    with pytest.raises(ValueError, match="scale_1x1"):
        grad_multiplier(spec, s3)


def test_ghost_multiplier_matches_the_formula_entry_by_entry():
    spec = RepOptConvSpec(2, 2, 1, depthwise=True, has_1x1=False, has_identity=True,
                          init_scale=1.0)
    sc = torch.tensor([0.3, 1.7])
    mult = grad_multiplier(spec, sc)
    assert mult.shape == (2, 1, 3, 3)
    for o in range(2):
        for h in range(3):
            for w in range(3):
                expected = sc[o] ** 2 + (1.0 if h == 1 and w == 1 else 0.0)
                assert mult[o, 0, h, w].item() == pytest.approx(expected.item())


def test_initialize_from_scales_builds_the_csla_starting_kernel():
    scales = _random_scales("repopt_vgg_tiny", 3)
    model = models.create("repopt_vgg_tiny", reinit=False)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules()
              if isinstance(m, RepOptConv2d)}
    initialize_from_scales(model, scales)
    for name, conv in model.named_modules():
        if not isinstance(conv, RepOptConv2d):
            continue
        s3 = scales[f"{name}.scale_conv"].reshape(-1, 1)
        w, old = conv.weight.detach(), before[name]
        off_centre = [(h, v) for h in range(3) for v in range(3) if (h, v) != (1, 1)]
        for h, v in off_centre:
            assert torch.allclose(w[:, :, h, v], s3 * old[:, :, h, v], atol=1e-6)
        residual = w[:, :, 1, 1] - s3 * old[:, :, 1, 1]
        if conv.spec.has_identity:
            residual -= torch.diag(scales[f"{name}.scale_identity"])
        one_by_one = residual / scales[f"{name}.scale_1x1"].reshape(-1, 1)
        bound = 1 / math.sqrt(conv.spec.in_channels)  # nn.Conv2d's default 1×1 init range
        assert one_by_one.abs().max() <= bound + 1e-5 and one_by_one.abs().max() > 0


def test_ghost_initialisation_is_scaled_kernel_plus_scaled_identity():
    scales = _random_scales("repopt_ghost_tiny", 4)
    model = models.create("repopt_ghost_tiny", reinit=False)
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, RepOptConv2d))
    old = conv.weight.detach().clone()
    initialize_from_scales(model, scales)
    expected = old * scales[f"{name}.scale_conv"].reshape(-1, 1, 1, 1)
    expected[:, 0, 1, 1] += scales[f"{name}.scale_identity"]
    assert torch.allclose(conv.weight, expected, atol=1e-6)


def test_optimizer_finds_the_backbone_inside_a_wrapper():
    torch.manual_seed(0)
    backbone = models.create("repopt_ghost_tiny")
    method = nn.ModuleDict({"backbone": backbone, "head": nn.Linear(64, 8)})
    scales = _random_scales("repopt_ghost_tiny", 1)  # keys relative to the backbone
    opt = build_repopt_optimizer(method, scales, lr=0.01)
    name, conv = next((n, m) for n, m in backbone.named_modules()
                      if isinstance(m, RepOptConv2d))
    expected = grad_multiplier(conv.spec, scales[f"{name}.scale_conv"])
    assert torch.equal(opt.state[conv.weight]["grad_multiplier"], expected)
    assert "grad_multiplier" not in opt.state[method["head"].weight]
    optimised = {id(p) for g in opt.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in method.parameters()}


def test_without_multipliers_repopt_sgd_is_torch_sgd():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    b = copy.deepcopy(a)
    opt_a = RepOptSGD(a.parameters(), lr=0.1, momentum=0.8, weight_decay=0.01, nesterov=True)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.8, weight_decay=0.01,
                            nesterov=True)
    for _ in range(3):
        x = torch.randn(6, 5)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_repopt_sgd_leaves_gradients_untouched():
    layer = nn.Linear(3, 2)
    layer.weight.grad = torch.ones(2, 3)
    opt = RepOptSGD([layer.weight], {layer.weight: torch.full((2, 3), 4.0)}, lr=0.1,
                    weight_decay=0.1)
    opt.step()
    assert torch.equal(layer.weight.grad, torch.ones(2, 3))


def test_bad_scales_raise():
    model = models.create("repopt_vgg_tiny")
    scales = default_scales(model)
    key = next(k for k in scales if k.endswith("scale_conv"))
    wrong_shape = dict(scales, **{key: torch.ones(3)})
    with pytest.raises(ValueError, match=rf"{key}.*shape"):
        build_repopt_optimizer(model, wrong_shape)
    missing = {k: v for k, v in scales.items() if not k.endswith("scale_1x1")}
    with pytest.raises(ValueError, match="scale_1x1"):
        build_repopt_optimizer(model, missing)
    extra = dict(scales, **{"stage9.0.conv.scale_conv": torch.ones(8)})
    with pytest.raises(ValueError, match="match no RepOpt conv"):
        initialize_from_scales(model, extra)
    with pytest.raises(ValueError, match="non-finite"):
        build_repopt_optimizer(model, dict(scales, **{key: torch.full_like(scales[key],
                                                                            float("nan"))}))
    ghost_scales = default_scales(models.create("repopt_ghost_tiny"))
    with pytest.raises(ValueError, match="no entry"):
        build_repopt_optimizer(model, ghost_scales)
    with pytest.raises(ValueError, match="no RepOpt convolution"):
        build_repopt_optimizer(models.create("resnet10_cifar", width=4))
    with pytest.raises(TypeError, match="scales"):
        build_repopt_optimizer(model, [1.0])
    with pytest.raises(ValueError, match="reinit"):
        models.create("repopt_vgg_tiny", scales="s.safetensors", reinit=False)


def test_bad_optimizer_arguments_raise():
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="shape"):
        RepOptSGD(layer.parameters(), {layer.weight: torch.ones(3, 2)}, lr=0.1)
    with pytest.raises(ValueError, match="not among"):
        RepOptSGD([layer.bias], {layer.weight: torch.ones(2, 3)}, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        RepOptSGD(layer.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        RepOptSGD(layer.parameters(), lr=0.1, nesterov=True)


@pytest.mark.parametrize("name", ["repopt_vgg_tiny", "repopt_ghost_tiny"])
def test_hyper_search_trains_scales_of_the_right_shapes(name):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 16, 16, generator=gen)
    labels = torch.arange(8) % 4
    scales = hyper_search(name, images, labels, epochs=2, batch_size=4, lr=0.2)
    start = default_scales(build_repopt_model(name, in_chans=1))
    assert scales.keys() == start.keys()
    assert all(scales[k].shape == start[k].shape for k in start)
    assert any(not torch.allclose(scales[k], start[k]) for k in start), "scales never moved"
    target = models.create(name, in_chans=1, reinit=False)
    initialize_from_scales(target, scales)
    build_repopt_optimizer(target, scales, lr=0.01)


def test_hyper_search_rejects_bad_input():
    images = torch.rand(4, 1, 16, 16)
    with pytest.raises(ValueError, match="model_name"):
        hyper_search("repvgg_tiny", images, torch.zeros(4), epochs=1)
    with pytest.raises(ValueError, match="labels"):
        hyper_search("repopt_vgg_tiny", images, torch.zeros(3), epochs=1)
    with pytest.raises(ValueError, match="images"):
        hyper_search("repopt_vgg_tiny", images[0], torch.zeros(4), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        hyper_search("repopt_vgg_tiny", images, torch.zeros(4), epochs=0)


def test_hypersearch_command_writes_scales_a_model_can_use(tmp_path, capsys):
    out = tmp_path / "scales.safetensors"
    main(["--model", "repopt_vgg_tiny", "--epochs", "1", "--out", str(out), "--limit", "16",
          "--image-size", "16", "--batch-size", "8"])
    assert "wrote" in capsys.readouterr().out
    scales = load_scales(out)
    assert scales.keys() == default_scales(build_repopt_model("repopt_vgg_tiny")).keys()
    model = models.create("repopt_vgg_tiny", in_chans=1, scales=str(out))
    assert isinstance(build_repopt_optimizer(model, out, lr=0.01), RepOptSGD)


def _first_conv_stride(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).stride[0]


@pytest.mark.parametrize("name", ["repopt_vgg_a0", "repopt_vgg_b1", "repopt_ghost_0_5x"])
def test_published_repopt_targets_default_to_the_stride_2_stem(name):
    assert _first_conv_stride(models.create(name, reinit=False)) == 2
    assert _first_conv_stride(models.create(name, stem_stride=1, reinit=False)) == 1
    # the twins built for the search and the equivalence checks match the target
    assert _first_conv_stride(build_repopt_model(name)) == 2
    assert _first_conv_stride(build_csla_model(name)) == 2


@pytest.mark.parametrize("name", ["repopt_vgg_tiny", "repopt_ghost_tiny"])
def test_tiny_repopt_targets_keep_the_cifar_stem(name):
    assert _first_conv_stride(models.create(name)) == 1
    assert _first_conv_stride(build_repopt_model(name)) == 1
    assert _first_conv_stride(build_csla_model(name)) == 1


def test_building_a_repopt_target_does_not_import_the_optimizers():
    code = ("import sys\n"
            "from avfed import models\n"
            "models.create('repopt_vgg_tiny')\n"
            "models.create('repopt_ghost_tiny', scales=None)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['avfed', 'optim']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_models_never_import_optim_and_models_optim_have_no_import_cycle():
    files = module_files("models", "optim")
    for module, path in files.items():
        if module.startswith("avfed.models"):
            optim = {i for i in avfed_imports(path) if i.startswith("avfed.optim")}
            assert not optim, f"{module} imports {sorted(optim)}"
    assert find_cycle(import_graph(files)) is None
