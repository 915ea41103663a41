import math

import pytest
import torch

from avfed import models, ssl
from avfed.ssl.acop import ACOP, decode_permutation, encode_permutation, permutations


def tiny_acop(**kwargs: object) -> ACOP:
    backbone = models.create("resnet10_cifar", in_chans=1, width=8)
    method = ssl.create("acop", backbone, projection_dim=8, hidden_dim=32, **kwargs)
    assert isinstance(method, ACOP)
    return method


def rising_tones(batch: int, generator: torch.Generator, n_mels: int = 16,
                 frames: int = 48) -> torch.Tensor:
    """Log-mels of a tone gliding upward: clip order is visible in the pitch."""
    start = torch.randint(0, 4, (batch,), generator=generator)
    centre = start[:, None] + torch.arange(frames)[None, :] * (n_mels - 5) / (frames - 1)
    bins = torch.arange(n_mels)
    tone = -((bins[None, :, None] - centre[:, None, :]) ** 2) / 2.0
    noise = 0.3 * torch.randn(batch, n_mels, frames, generator=generator)
    return (tone + noise)[:, None]


def test_permutation_table_is_sorted_and_encode_decode_invert_each_other():
    table = permutations(3)
    assert table.tolist() == [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    for n in (2, 3, 4):
        table = permutations(n)
        assert len(table) == math.factorial(n)
        assert torch.equal(encode_permutation(table), torch.arange(len(table)))
        assert torch.equal(decode_permutation(torch.arange(len(table)), n), table)
    assert encode_permutation(torch.tensor([2, 0, 1])).item() == 4
    with pytest.raises(ValueError, match="permutation of 0..2"):
        encode_permutation(torch.tensor([[0, 0, 1]]))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        decode_permutation(6, 3)
    with pytest.raises(ValueError, match="num_clips"):
        permutations(1)


def test_labels_decode_to_the_applied_clip_order():
    method = tiny_acop(num_clips=3, gap_frames=2)
    # 3 clips of 4 frames with 2-frame gaps, centred in 18 frames: starts 1, 7, 13
    x = torch.zeros(6, 1, 2, 18)
    for clip, start in enumerate((1, 7, 13)):
        x[..., start : start + 4] = clip
    clips = method.clip_tuple(x)
    assert clips.shape == (6, 3, 1, 2, 4)
    labels = torch.arange(6)
    shuffled = method.shuffle_clips(clips, labels)
    seen_order = shuffled[:, :, 0, 0, 0].long()  # which original clip sits at each position
    assert torch.equal(seen_order, decode_permutation(labels, 3))
    assert torch.equal(encode_permutation(seen_order), labels)


def test_clip_cutting_rejects_inputs_too_short_and_bad_arguments():
    method = tiny_acop(num_clips=4, clip_frames=5)
    with pytest.raises(ValueError, match="cannot cut 4 clips"):
        method.clip_tuple(torch.zeros(2, 1, 8, 19))
    with pytest.raises(ValueError, match="gap_frames"):
        tiny_acop(gap_frames=-1)
    with pytest.raises(ValueError, match="num_clips"):
        tiny_acop(num_clips=7)


def test_head_width_and_backbone_only_sharing():
    method = tiny_acop(num_clips=4)
    assert method.head.classifier[-1].out_features == 24
    assert method.head.classifier[-1].in_features == 32 * 6  # 6 clip pairs
    local = tiny_acop(share_head=False)
    assert local.shared_state() and all(k.startswith("backbone.") for k in local.shared_state())
    assert set(tiny_acop().shared_state()) > set(local.shared_state())


def test_loss_starts_near_log_classes_and_falls_within_twenty_steps():
    torch.manual_seed(0)
    method = tiny_acop()
    optimizer = torch.optim.Adam(method.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(20):
        x = rising_tones(16, data)
        loss = method.training_loss(x, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(6)) < 0.4
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    method.eval()
    assert method.embed(rising_tones(2, data)).shape == (2, method.backbone.num_features)
