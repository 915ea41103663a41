import math

import pytest
import torch

from avfed.audio.augment import (
    FrequencyMasking,
    MixupWithMemory,
    RandomGain,
    RandomResizeCrop,
    RandomTimeShift,
    TimeMasking,
    log_mel_view_augmentation,
    reset_mixup_memories,
)

FULL = dict(time_shift=0.25, gain=0.5, fade=True, freq_masks=2, time_masks=2)


def log_mels(seed: int = 0, batch: int = 6, n_mels: int = 16, frames: int = 24) -> torch.Tensor:
    return torch.randn(batch, 1, n_mels, frames, generator=torch.Generator().manual_seed(seed))


def test_views_keep_shape_and_repeat_for_the_same_seed():
    x = log_mels()
    aug_a = log_mel_view_augmentation(seed=3, **FULL)
    aug_b = log_mel_view_augmentation(seed=3, **FULL)
    for _ in range(3):  # memory and generator state evolve identically across calls
        out_a, out_b = aug_a(x), aug_b(x)
        assert out_a.shape == x.shape and out_a.dtype == x.dtype
        assert torch.equal(out_a, out_b)
        assert not torch.allclose(out_a, x)


def test_another_seed_gives_another_view_and_samples_differ_within_a_batch():
    x = log_mels().expand(6, 1, 16, 24).clone()
    x[:] = x[0]  # six copies of one log-mel
    out_a = log_mel_view_augmentation(seed=1, **FULL)(x)
    out_b = log_mel_view_augmentation(seed=2, **FULL)(x)
    assert not torch.allclose(out_a, out_b)
    assert not torch.allclose(out_a[0], out_a[1])  # parameters are drawn per sample


def test_global_rng_is_used_without_a_seed():
    x = log_mels()
    torch.manual_seed(5)
    first = log_mel_view_augmentation(**FULL)(x)
    torch.manual_seed(5)
    assert torch.equal(first, log_mel_view_augmentation(**FULL)(x))


def test_crop_with_unit_scales_is_the_identity():
    x = log_mels()
    crop = RandomResizeCrop((1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    assert torch.allclose(crop(x), x, atol=1e-5)


def test_crop_over_a_wider_canvas_shrinks_the_clip_between_silence():
    # canvas 2×T wide, crop = whole canvas: the clip (ones) lands in the middle half
    # and the first and last output frames sample the zero canvas
    x = torch.ones(2, 1, 8, 16)
    out = RandomResizeCrop((1.0, 2.0), (1.0, 1.0), (2.0, 2.0))(x)
    assert torch.allclose(out[..., :2], torch.zeros(1), atol=1e-6)
    assert torch.allclose(out[..., -2:], torch.zeros(1), atol=1e-6)
    assert torch.allclose(out[..., 7:9], torch.ones(1), atol=1e-5)


def test_mixup_with_empty_memory_is_identity_then_mixes_in_power_domain():
    mix = MixupWithMemory(ratio=0.4, memory_size=8, generator=torch.Generator().manual_seed(0))
    silence = torch.zeros(4, 1, 4, 6)  # exp(0) = 1
    assert torch.equal(mix(silence), silence)
    assert len(mix) == 4
    loud = torch.full((4, 1, 4, 6), math.log(3.0))
    out = mix(loud)
    # log((1 - a)·3 + a·1) with a in [0, 0.4): between log(2.2) and log(3), per sample
    assert (out > math.log(2.2) - 1e-6).all() and (out <= math.log(3.0) + 1e-6).all()
    per_sample = out.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample[:, 0].unique().numel() == 4


def test_mixup_memory_is_a_bounded_fifo_and_can_be_reset():
    mix = MixupWithMemory(memory_size=5)
    for _ in range(3):
        mix(log_mels(batch=2))
    assert len(mix) == 5
    mix(log_mels(batch=9))  # more than the memory holds: only the last 5 are kept
    assert len(mix) == 5
    aug = log_mel_view_augmentation(mixup_memory=5)
    aug(log_mels())
    reset_mixup_memories(aug)
    x = log_mels(seed=1)
    assert torch.equal(aug[0](x), x)  # empty again, so the mixup step is the identity
    with pytest.raises(ValueError, match="memory holds"):
        aug[0](log_mels(n_mels=8))


def test_time_shift_rolls_whole_frames():
    x = torch.arange(10.0).repeat(3, 1, 2, 1)  # frame t holds value t
    out = RandomTimeShift(0.3, generator=torch.Generator().manual_seed(0))(x)
    shifts = []
    for row in out[:, 0, 0]:
        shift = int(-row[0].item()) % 10  # out[t] = x[t - shift]
        assert torch.equal(row, torch.roll(torch.arange(10.0), shift))
        assert min(shift, 10 - shift) <= 3  # at most 30% of the frames, either way
        shifts.append(shift)
    assert len(set(shifts)) > 1
    assert torch.equal(out[:, :, 0], out[:, :, 1])  # the same shift for every mel bin


def test_masks_fill_bands_with_the_sample_mean():
    x = log_mels(batch=32)
    means = x.mean(dim=(1, 2, 3))
    out = TimeMasking(max_width=5, num_masks=1, generator=torch.Generator().manual_seed(0))(x)
    changed = (out != x).any(dim=2)[:, 0]  # [B, T]: frames touched
    assert changed.sum(dim=1).max() <= 5
    for b in range(len(x)):
        assert torch.allclose(out[b, 0][:, changed[b]], means[b].expand(16, int(changed[b].sum())))
    out = FrequencyMasking(max_width=3, num_masks=2)(x)
    assert ((out != x).any(dim=3)[:, 0].sum(dim=1) <= 6).all()


def test_gain_adds_bounded_offsets():
    x = log_mels()
    gain = RandomGain(0.5, generator=torch.Generator().manual_seed(0))
    delta = gain(x) - x
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-6)
    assert delta.abs().max() <= 0.5
    fade = RandomGain(0.5, fade=True, generator=torch.Generator().manual_seed(0))
    ramp = (fade(x) - x)[:, 0, 0]  # one straight line per sample
    steps = ramp[:, 1:] - ramp[:, :-1]
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-5)


def test_probability_zero_leaves_input_and_bad_arguments_are_named():
    x = log_mels()
    assert torch.equal(RandomGain(1.0, p=0.0)(x), x)
    with pytest.raises(ValueError, match=r"\[B, C, F, T\]"):
        RandomGain(1.0)(torch.zeros(3, 16, 24))
    with pytest.raises(ValueError, match="p must be in"):
        RandomGain(1.0, p=1.5)
    with pytest.raises(ValueError, match="freq_scale"):
        RandomResizeCrop(freq_scale=(1.5, 0.6))
    with pytest.raises(TypeError, match="mixup_rato"):
        log_mel_view_augmentation(mixup_rato=0.2)
