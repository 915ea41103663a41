"""Video SSL: clip augmentations, pretext labels that decode to what was applied,
multi-clip retrieval, and a federated video run through the engine."""

import json
from itertools import permutations

import numpy as np
import pytest
import torch

from avfed import models
from avfed.build import build_run
from avfed.config import ConfigError, load_config
from avfed.eval.video_eval import frozen_scores, video_features
from avfed.ssl.video import pretext_registry
from avfed.ssl.video.clips import uniform_starts
from avfed.ssl.video.ctp import centres, paste_patches, random_tracks
from avfed.ssl.video.vcop import ORDERS
from avfed.video.augment import ClipAugment, ClipAugmentConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


IDENTITY = ClipAugment(ClipAugmentConfig(size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                         hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0))


def _frame_index_videos(batch: int = 6, frames: int = 16, size: int = 8) -> torch.Tensor:
    """Every pixel of frame t holds t·10 (uint8): a clip's frames name the stored frames
    they came from."""
    t = torch.arange(frames).view(1, 1, frames, 1, 1) * 10
    return t.expand(batch, 3, frames, size, size).to(torch.uint8).contiguous()


def _frames_of(clips: torch.Tensor) -> torch.Tensor:
    """The stored frame index of every frame of float clips cut from the videos above."""
    return torch.round(clips[:, 0, :, 0, 0] * 255 / 10).long()


def _tiny_backbone() -> torch.nn.Module:
    return models.create("r3d_10", in_chans=3, width=4)


# -- augmentations ------------------------------------------------------------------------

def test_augment_is_one_draw_per_clip_and_reproducible():
    still = torch.rand(1, 3, 1, 16, 16).expand(4, 3, 5, 16, 16).contiguous()  # no motion
    aug = ClipAugment(ClipAugmentConfig(size=12))
    out = aug(still, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 5, 12, 12)
    # every frame of a clip got the same crop, flip and colour: still clips stay still
    assert torch.allclose(out, out[:, :, :1].expand_as(out), atol=1e-6)
    # the four identical clips got four different views
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 4))
    again = aug(still, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_identity_settings_and_flip_do_what_they_say():
    clips = torch.rand(2, 3, 4, 8, 8)
    assert torch.allclose(IDENTITY(clips, torch.Generator().manual_seed(0)), clips, atol=1e-5)
    flip = ClipAugment(ClipAugmentConfig(size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                         hflip_p=1.0, jitter_p=0.0, grayscale_p=0.0))
    assert torch.allclose(flip(clips), clips.flip(-1), atol=1e-5)
    gray = ClipAugment(ClipAugmentConfig(size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                         hflip_p=0.0, jitter_p=0.0, grayscale_p=1.0))
    out = gray(clips)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        IDENTITY(torch.rand(2, 3, 8, 8))


# -- pretext labels decode to what was applied ----------------------------------------------

def test_vcop_label_names_the_permutation_shown():
    pretext = pretext_registry.get("vcop")(_tiny_backbone(), IDENTITY, clip_len=4, interval=2)
    tuples, labels = pretext.make_batch(_frame_index_videos(batch=24),
                                        torch.Generator().manual_seed(1))
    assert tuples.shape == (24, 3, 3, 4, 8, 8) and len(ORDERS) == 6
    assert set(labels.tolist()) == set(range(6))
    starts = _frames_of(tuples.flatten(0, 1)).view(24, 3, 4)[:, :, 0]
    for shown, label in zip(starts.tolist(), labels.tolist(), strict=True):
        temporal_rank = np.argsort(np.argsort(shown)).tolist()
        assert tuple(temporal_rank) == ORDERS[label]  # shown clip i is the ORDERS[i]-th
        assert sorted(shown)[1] - sorted(shown)[0] == 4 + 2  # clip_len + interval apart
    assert sorted(ORDERS) == sorted(permutations(range(3)))


def test_speed_label_is_the_frame_step():
    pretext = pretext_registry.get("speed")(_tiny_backbone(), IDENTITY, clip_len=4,
                                            rates=[1, 2, 4])
    clips, labels = pretext.make_batch(_frame_index_videos(batch=30),
                                       torch.Generator().manual_seed(2))
    steps = _frames_of(clips).diff(dim=1)
    assert set(labels.tolist()) == {0, 1, 2}
    for row, label in zip(steps.tolist(), labels.tolist(), strict=True):
        assert set(row) == {(1, 2, 4)[label]}
    with pytest.raises(ValueError, match="distinct"):
        pretext_registry.get("speed")(_tiny_backbone(), IDENTITY, rates=[2, 2])


def test_ctp_targets_are_the_pasted_patch_centres():
    tracks = random_tracks(5, 6, size=20, patch=4, max_speed=3.0,
                           generator=torch.Generator().manual_seed(3))
    assert int(tracks.min()) >= 0 and int(tracks.max()) <= 16  # always fully inside
    pasted = paste_patches(torch.zeros(5, 1, 6, 20, 20), torch.ones(5, 1, 4, 4), tracks)
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    mass = pasted[:, 0].sum(dim=(2, 3))
    assert torch.all(mass == 16)
    cx = (pasted[:, 0] * xs).sum(dim=(2, 3)) / mass
    cy = (pasted[:, 0] * ys).sum(dim=(2, 3)) / mass
    # pixel centres sit at i + 0.5 in the normalised convention of centres()
    measured = torch.stack([cx + 0.5, cy + 0.5], dim=-1) * 2 / 20 - 1
    assert torch.allclose(measured, centres(tracks, 4, 20), atol=1e-5)

    # through the pretext: videos of two grey levels strictly inside (0, 1); the patch,
    # cut from another video and contrast-stretched, holds only 0s and 1s
    videos = (torch.arange(6) * 40 + 30).view(6, 1, 1, 1, 1).expand(6, 3, 10, 8, 8).clone()
    videos[..., 4:, :] += 10
    pretext = pretext_registry.get("ctp")(_tiny_backbone(), IDENTITY, clip_len=5,
                                          patch_fraction=0.25, max_speed=0.2)
    clips, target = pretext.make_batch(videos.to(torch.uint8).contiguous(),
                                       torch.Generator().manual_seed(4))
    mask = ((clips[:, 0] == 0) | (clips[:, 0] == 1)).float()  # [B, L, H, W]
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    m = mask.sum(dim=(2, 3))
    got = torch.stack([(mask * xs).sum((2, 3)) / m + 0.5, (mask * ys).sum((2, 3)) / m + 0.5],
                      -1) * 2 / 8 - 1
    assert torch.allclose(got, target, atol=1e-5)


@pytest.mark.parametrize("name", ["ctp", "vcop", "speed", "simclr", "byol"])
def test_each_pretext_lowers_its_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    pretext = pretext_registry.get(name)(_tiny_backbone(), IDENTITY)
    videos = (torch.rand(8, 3, 16, 8, 8) * 255).to(torch.uint8)
    opt = torch.optim.Adam(pretext.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss, _ = pretext.loss(videos, torch.Generator().manual_seed(5))  # same batch each step
        opt.zero_grad()
        loss.backward()
        opt.step()
        pretext.model.after_step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < losses[0]
    shared = set(pretext.model.shared_state())
    assert any(k.startswith("backbone.") for k in shared)
    if name == "byol":
        assert not any(k.startswith("target.") for k in shared)  # the target stays local


# -- evaluation ---------------------------------------------------------------------------

def test_recall_at_k_on_a_hand_made_case():
    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    gallery_labels = np.array([0, 1, 1, 0])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    query_labels = np.array([0, 0])
    # query 0: nearest is item 0 (class 0) → hit at 1; query 1: ranking 2, 3 → hit at 2
    scores = frozen_scores(gallery, gallery_labels, queries, query_labels, knn_k=1,
                           ks=(1, 2, 3, 5))
    assert scores["recall@1"] == 0.5 and scores["recall@2"] == 1.0
    assert "recall@5" not in scores  # k beyond the gallery is left out, never clipped


def test_video_features_average_the_evaluation_clips():
    videos = _frame_index_videos(batch=3, frames=10)
    starts = uniform_starts(10, 4, 3)
    assert starts == [0, 3, 6]

    class MeanFrame(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 3, 4))  # [B, T]: each frame's value

    feats = video_features(MeanFrame(), videos, clip_len=4, num_clips=3, size=8)
    expected = np.mean([[(s + i) * 10 for i in range(4)] for s in starts], axis=0)
    assert feats.shape == (3, 4)
    assert torch.allclose(feats * 255, torch.tensor(expected).float().expand(3, 4), atol=1e-3)


# -- the run builder and the engine ---------------------------------------------------------

TINY = ["fl.rounds=2", "fl.num_clients=2", "fl.sim_cpus=1", "data.image_size=16",
        "data.video.videos_per_class=4", "data.video.num_frames=8", "model.args.width=4",
        "task.args.pretext_args.clip_len=4", "task.args.eval_clips=2", "train.batch_size=8",
        "eval.probe_max_iter=100", "fl.timeout_s=600", "data.partitioner=shards",
        "data.classes_per_client=5"]


def test_builder_refuses_mismatched_video_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("AVFED_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="task.name"):
        build_run(load_config("fedvssl_moving_digits", [*TINY, "task.name=ssl"]))
    with pytest.raises(ConfigError, match="model.name"):
        build_run(load_config("fedvssl_moving_digits", [*TINY, "model.name=resnet10_cifar"]))
    with pytest.raises(ConfigError, match="data.video.num_frames"):
        build_run(load_config("fedvssl_moving_digits", [*TINY, "task.args.pretext=vcop",
                                                        "task.args.pretext_args.clip_len=4"]))
    with pytest.raises(ConfigError, match="task.args.pretext_args.bogus"):
        build_run(load_config("fedvssl_moving_digits", [*TINY, "task.args.pretext_args.bogus=1"]))
    with pytest.raises(ConfigError, match="data.source"):
        build_run(load_config("simclr_digits", ["task.name=video_ssl", "model.name=r3d_10"]))


def test_two_round_federated_video_run_completes(tmp_path, monkeypatch):
    from avfed.fl.simulation import run_federated
    from avfed.runs import RunDir, load_checkpoint

    monkeypatch.setenv("AVFED_CACHE", str(tmp_path / "cache"))
    cfg = load_config("fedvssl_moving_digits", TINY)
    run = RunDir.create(cfg, tmp_path / "run")
    summary = run_federated(build_run(cfg), run)
    clients = [json.loads(line) for line in (run.path / "clients.jsonl").read_text().splitlines()]
    assert sorted((c["round"], c["partition-id"]) for c in clients) == [
        (r, p) for r in (1, 2) for p in range(2)]
    assert all("pretext_err_px" in c for c in clients)
    assert summary["rejected_updates"] == 0
    for key in ("recall@1", "recall@5", "recall@10", "recall@20", "knn_acc", "probe_acc"):
        assert 0.0 <= summary["final"][key] <= 1.0
    initial = load_checkpoint(run.checkpoint_path(0))
    final = load_checkpoint(run.path / "final.safetensors")
    changed = [k for k in final if k.startswith("backbone.") and final[k].is_floating_point()
               and not torch.equal(initial[k], final[k])]
    assert changed
