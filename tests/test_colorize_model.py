"""VCGAN's generator, discriminator, flow, losses and metrics on small hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avfed.colorize.checkpoint import load_colorizer, save_colorizer
from avfed.colorize.color import compose, luminance, rgb_to_ycc, ycc_to_rgb
from avfed.colorize.discriminator import PatchDiscriminator
from avfed.colorize.flow import consistency_mask, long_term_pairs, warp
from avfed.colorize.generator import GeneratorSpec, build_generator, colorize_clip
from avfed.colorize.losses import long_term_loss, short_term_loss
from avfed.colorize.metrics import cdc, colorfulness, warp_error, warp_error_from_flows

SPEC = GeneratorSpec(base=4, depth=3, attention=2, extractor="resnet10_cifar",
                     extractor_args={"width": 4}, image_size=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator(SPEC).eval()


def test_colour_space_round_trip_and_luminance():
    rgb = torch.rand(2, 3, 8, 8)
    assert torch.allclose(ycc_to_rgb(rgb_to_ycc(rgb)), rgb, atol=1e-5)
    ycc = rgb_to_ycc(rgb)
    assert torch.allclose(compose(ycc[:, :1], ycc[:, 1:]), rgb, atol=1e-5)


def test_generator_and_discriminator_shapes(generator):
    gray = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        out = generator(gray)
        chroma = generator.chroma(gray)
    assert out.shape == (2, 3, 32, 48) and chroma.shape == (2, 2, 32, 48)
    assert out.min() >= 0 and out.max() <= 1 and chroma.abs().max() <= 0.5
    # luminance comes from the input (up to the clamp into [0, 1])
    unclamped = ycc_to_rgb(torch.cat([gray, chroma], 1), clamp=False)
    inside = ((unclamped >= 0) & (unclamped <= 1)).all(1, keepdim=True)
    assert torch.allclose(luminance(out)[inside], gray[inside], atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 8"):
        generator(torch.rand(1, 1, 30, 32))
    disc = PatchDiscriminator(base=4)
    assert disc(gray, out).shape == (2, 1, 2, 4)


def test_recurrence_goes_through_the_placeholder_path_only(generator):
    torch.manual_seed(1)
    gray = torch.rand(1, 4, 1, 32, 32)
    flows = torch.randn(1, 3, 2, 32, 32)
    proj = generator.placeholder_proj
    saved = proj.weight.clone(), proj.bias.clone()
    with torch.no_grad():
        # an untrained extractor's pooled features barely vary: amplify the path so that
        # its effect on the output is measurable
        proj.weight.mul_(1000.0)
        out = colorize_clip(generator, gray, flows)
        # frame t is G(x_t, warped output t-1), nothing else
        step = generator(gray[:, 2], warp(out[:, 1], flows[:, 1]))
        assert torch.allclose(out[:, 2], step, atol=1e-6)
        changed = gray.clone()
        changed[:, 2] = torch.rand(1, 1, 32, 32)
        out2 = colorize_clip(generator, changed, flows)
        assert torch.equal(out2[:, :2], out[:, :2])  # causal
        assert (out2[:, 3] - out[:, 3]).abs().max() > 1e-3  # frame t − 1 matters...
        image_a = colorize_clip(generator, gray, flows, recurrent=False)
        image_b = colorize_clip(generator, changed, flows, recurrent=False)
        assert torch.equal(image_a[:, 3], image_b[:, 3])  # ...not in image mode
        # ...and only through the placeholder extractor: cut it, and they no longer do
        proj.weight.zero_()
        proj.bias.zero_()
        cut_a = colorize_clip(generator, gray, flows)
        cut_b = colorize_clip(generator, changed, flows)
        proj.weight.copy_(saved[0])
        proj.bias.copy_(saved[1])
    assert torch.equal(cut_a[:, 3], cut_b[:, 3])


def test_long_term_loss_hand_made():
    # identical inputs and zero flow: the mask is 1, the loss is the mean |p_t − p_j|
    t_frames = 4
    gray = torch.full((1, t_frames, 1, 8, 8), 0.5)
    outputs = torch.stack([torch.full((1, 3, 8, 8), 0.1 * t) for t in range(t_frames)], 1)
    pairs = long_term_pairs(t_frames)
    assert pairs == [(2, 0), (3, 0), (3, 1)]
    zero = torch.zeros(1, len(pairs), 2, 8, 8)
    loss = long_term_loss(outputs, gray, pairs, zero)
    assert loss.item() == pytest.approx((0.2 + 0.3 + 0.2) / 3, abs=1e-6)
    # short-term: consecutive frames differ by 0.1 everywhere
    assert short_term_loss(outputs, gray, torch.zeros(1, 3, 2, 8, 8)).item() == pytest.approx(
        0.1, abs=1e-6)
    # where the warped input does not match, the mask switches the term off
    gray_changed = gray.clone()
    gray_changed[:, 0] = 0.0
    masked = long_term_loss(outputs, gray_changed, pairs, zero)
    assert masked.item() == pytest.approx(0.2 / 3, abs=1e-3)  # only (3, 1) is left
    with pytest.raises(ValueError, match="two frames apart"):
        long_term_loss(outputs, gray, [(2, 1)], zero[:, :1])


def test_long_term_loss_follows_the_flow():
    # a random texture moving right by 1 px per frame, colorized consistently
    torch.manual_seed(2)
    base = torch.rand(1, 3, 16, 24)
    base[..., :4] = 0.3
    base[..., -4:] = 0.3
    frames = torch.stack([torch.roll(base, t, dims=-1) for t in range(4)], 1)
    gray = luminance(frames)
    pairs = long_term_pairs(4)
    right = torch.zeros(1, len(pairs), 2, 16, 24)
    for k, (t, j) in enumerate(pairs):
        right[:, k, 0] = -(t - j)  # frame t at x came from frame j at x − (t − j)
    good = long_term_loss(frames, gray, pairs, right)
    bad = long_term_loss(frames, gray, pairs, torch.zeros_like(right))
    assert good.item() < 1e-6 < bad.item()


def test_warp_error_hand_made():
    base = torch.rand(3, 16, 24)
    base[:, :, :4] = 0.25
    base[:, :, -4:] = 0.25
    moving = torch.stack([torch.roll(base, t, dims=-1) for t in range(4)])
    backward = torch.zeros(3, 2, 16, 24)
    backward[:, 0] = -1.0
    assert warp_error_from_flows(moving, -backward, backward) < 1e-10
    # flicker: every other frame 0.1 brighter, no motion → exactly 0.1²
    still = torch.stack([base * 0.5 + (0.1 if t % 2 else 0.0) for t in range(4)])
    zero = torch.zeros(3, 2, 16, 24)
    assert warp_error_from_flows(still, zero, zero) == pytest.approx(0.01, rel=1e-4)
    # an occluded region (forward and backward flows disagree) is left out
    forward = zero.clone()
    forward[:, 0, 4:8, 4:8] = 5.0
    mask = consistency_mask(forward, zero)
    assert mask[:, 0, 4:8, 4:8].sum() == 0 and mask.sum() > 0.8 * mask.numel()
    spoiled = still.clone()
    spoiled[1:, :, 4:8, 4:8] += 0.5
    flicker_free = torch.stack([base * 0.5] * 4)
    flicker_free[1:, :, 4:8, 4:8] += 0.5 * torch.arange(1, 4).view(3, 1, 1, 1)
    assert warp_error_from_flows(flicker_free, forward, zero) < 1e-10
    # a motion boundary (a step in the backward flow) is left out too
    step = zero.clone()
    step[:, 0, :, 12:] = 3.0
    assert consistency_mask(-step, step)[:, 0, :, 11].sum() == 0
    # with flows computed by OpenCV: a consistently coloured moving photo beats a flickering
    flicker = moving.clone()
    flicker[1::2] = (flicker[1::2] + 0.15).clamp(0, 1)
    gray = luminance(moving)
    assert warp_error(moving, gray) < 0.2 * warp_error(flicker, gray)


def test_cdc_and_colorfulness():
    frames = torch.rand(5, 3, 16, 16)
    same = frames[:1].expand(5, -1, -1, -1)
    assert cdc(same) == 0.0
    different = torch.stack([torch.full((3, 16, 16), v) for v in (0.1, 0.5, 0.9, 0.2, 0.7)])
    assert cdc(different) == pytest.approx(math.log(2), abs=1e-9)  # disjoint histograms
    assert 0 < cdc(frames) < math.log(2)
    gray = torch.rand(2, 1, 16, 16).expand(-1, 3, -1, -1)
    assert colorfulness(gray) == 0.0
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 1.0
    assert colorfulness(red) == pytest.approx(0.3 * np.sqrt(255 ** 2 + 127.5 ** 2))


def test_colorizer_checkpoint_round_trip(generator, tmp_path):
    path = save_colorizer(generator, tmp_path / "colorizer.safetensors")
    loaded = load_colorizer(path)
    assert loaded.spec == SPEC
    gray = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(gray), generator(gray))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_colorizer(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        load_colorizer(tmp_path / "missing.safetensors")


def test_perceptual_loss_only_from_supplied_weights(tmp_path):
    from safetensors.torch import save_file

    from avfed.colorize.losses import _VGG16_TO_CONV4_3, PerceptualLoss

    torch.manual_seed(0)
    state, cin, index = {}, 3, 0
    for item in _VGG16_TO_CONV4_3:  # torchvision's names: features.<index>.weight
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(item), cin, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(int(item))
        cin, index = int(item), index + 2
    save_file(state, str(tmp_path / "vgg.safetensors"))
    loss = PerceptualLoss(tmp_path / "vgg.safetensors")
    x = torch.rand(1, 3, 16, 16)
    assert loss(x, x).item() == 0.0 and loss(x, torch.rand(1, 3, 16, 16)).item() > 0
    del state["features.21.weight"]  # conv4_3
    save_file(state, str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="conv4_3"):
        PerceptualLoss(tmp_path / "short.safetensors")
    with pytest.raises(FileNotFoundError):
        PerceptualLoss(tmp_path / "none.safetensors")
