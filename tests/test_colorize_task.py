"""The vcgan task, its built-in clips, the clip folders, training and resuming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from avfed.build import build_run
from avfed.colorize.checkpoint import load_colorizer
from avfed.colorize.color import luminance
from avfed.colorize.color_clips import KINDS, generate_color_clips, pack_clips, unpack_clips
from avfed.colorize.datasets import load_frame_folders, load_video_folder
from avfed.config import ConfigError, load_config
from avfed.tasks import ClientData, TrainContext

TINY = ["data.image_size=32", "task.args.steps_per_round=1", "task.args.depth=3",
        "task.args.base=4", "task.args.disc_base=4", "model.args.width=4",
        "task.args.eval_clips=3", "train.batch_size=3", "task.args.image_rounds=1",
        "fl.num_clients=2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_color_clips_are_deterministic_and_held_out():
    a, labels = generate_color_clips(10, size=24, num_frames=3, seed=3)
    b, _ = generate_color_clips(10, size=24, num_frames=3, seed=3)
    c, _ = generate_color_clips(10, size=24, num_frames=3, seed=4)
    test, _ = generate_color_clips(10, size=24, num_frames=3, seed=3, split="test")
    assert a.shape == (10, 3, 24, 24, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, test)
    assert [KINDS[k] for k in labels[:5]] == list(KINDS)
    assert (a[:, 1:] != a[:, :1]).any(axis=(2, 3, 4)).all()  # every clip moves
    packed = pack_clips(a)
    assert packed.shape == (10, 9, 24, 24)
    assert torch.equal((unpack_clips(packed) * 255).round().to(torch.uint8),
                       torch.from_numpy(a).permute(0, 1, 4, 2, 3))


@pytest.fixture(scope="module")
def built():
    return build_run(load_config("vcgan_color_clips", TINY), with_strategy=False)


def test_build_refuses_what_cannot_train():
    with pytest.raises(ConfigError, match="data.source"):
        build_run(load_config("vcgan_color_clips", TINY + ["data.source=image_digits"]),
                  with_strategy=False)
    with pytest.raises(ConfigError, match="data.image_size"):
        build_run(load_config("vcgan_color_clips", TINY + ["data.image_size=36"]),
                  with_strategy=False)
    with pytest.raises(ConfigError, match="task.args.clip_len"):
        build_run(load_config("vcgan_color_clips", TINY + ["task.args.clip_len=9"]),
                  with_strategy=False)


def test_both_stages_train_and_the_colorizer_is_written(built, tmp_path):
    task = built.task
    data = built.client_data(0)
    idx = {"image": np.arange(3)}
    small = ClientData(0, {"image": data.inputs["image"][:3]}, {"image": data.labels["image"][:3]},
                       idx)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    image = task.train(small, TrainContext(seed=1, server_round=1))
    assert image.metrics["stage"] == 1.0 and np.isfinite(image.loss)
    # the image stage trains the generator only
    changed = {k.split(".")[0] for k, v in task.model.state_dict().items()
               if not torch.equal(v, before[k])}
    assert changed == {"generator"}
    video = task.train(small, TrainContext(seed=2, server_round=2))
    assert video.metrics["stage"] == 2.0
    for key in ("short_term-loss", "long_term-loss", "adversarial-loss", "d-loss"):
        assert np.isfinite(video.metrics[key])
    scores = task.evaluate()
    assert set(scores) == {"psnr", "ssim", "colorfulness", "warp_error", "cdc"}
    floor = task.baselines()["grayscale input"]
    assert floor["colorfulness"] == pytest.approx(0.0, abs=1e-6)
    path = task.write_artifacts(tmp_path)[0]
    generator = load_colorizer(path)
    gray = luminance(unpack_clips(built.splits["image"][1].images[:1])[:, 0])
    with torch.no_grad():
        assert torch.equal(generator(gray), task.model.generator.eval()(gray))


def test_image_stage_loss_goes_down(built):
    task = built.task
    data = built.client_data(1)
    few = ClientData(1, {"image": data.inputs["image"][:3]}, {"image": data.labels["image"][:3]},
                     {"image": np.arange(3)})
    lr = task.cfg.train.lr
    task.cfg.train.lr = 0.003
    try:
        losses = [task.train(few, TrainContext(seed=5, server_round=1)).loss for _ in range(8)]
    finally:
        task.cfg.train.lr = lr
    assert losses[-1] < 0.9 * losses[0]


def test_train_and_resume(tmp_path):
    from avfed.colorize.training import train_colorizer

    overrides = TINY + ["task.args.eval_clips=2"]
    cfg = load_config("vcgan_color_clips", overrides + ["fl.rounds=1"])
    # a one-round run; then the same folder continued to two rounds
    first = train_colorizer(cfg, run_dir=tmp_path / "run")
    assert first["status"] == "finished"
    cfg2 = load_config(str(tmp_path / "run" / "config.yaml"), ["fl.rounds=2"])
    second = train_colorizer(cfg2, run_dir=tmp_path / "run", resume=True)
    assert second["rounds_completed"] == 2
    rounds = [r["round"] for r in
              map(eval_json, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())]
    assert rounds == [0, 1, 2]
    assert (tmp_path / "run" / "checkpoints" / "round_002.safetensors").is_file()
    assert (tmp_path / "run" / "colorizer.safetensors").is_file()
    # a round checkpoint (generator + critic, no metadata) is read with the run's config
    from_round = load_colorizer(tmp_path / "run" / "checkpoints" / "round_002.safetensors")
    final = load_colorizer(tmp_path / "run")
    gray = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(from_round(gray), final(gray))


def eval_json(line: str) -> dict:
    import json

    return json.loads(line)


def test_frame_and_video_folders(tmp_path):
    rng = np.random.default_rng(0)
    frames_root = tmp_path / "davis"
    for clip in range(3):
        folder = frames_root / f"clip{clip}"
        folder.mkdir(parents=True)
        for t in range(7):
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(
                folder / f"{t:05d}.png")
    (frames_root / "clip2" / "00003.png").write_bytes(b"broken")
    with pytest.warns(RuntimeWarning, match="clip2"):
        train, test = load_frame_folders(frames_root, 16, test_fraction=0.5)
    assert train.images.shape[1:] == (18, 16, 16) and len(train) + len(test) == 2
    assert [s.path.name for s in train.skipped] == ["clip2"]
    from avfed.video import write_video

    videos = tmp_path / "videvo"
    videos.mkdir()
    for name in ("a", "b"):
        write_video(videos / f"{name}.mp4", rng.integers(0, 255, (13, 32, 48, 3), np.uint8),
                    fps=8)
    (videos / "corrupt.mp4").write_bytes(b"\x00" * 100)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        train, test = load_video_folder(videos, 16)
    assert len(train) == 2 and len(test) == 2  # two windows of 6 frames per video
    assert [s.path.name for s in train.skipped] == ["corrupt.mp4"]


def test_extractors_start_from_a_checkpoint(tmp_path):
    from avfed import models
    from avfed.runs import save_checkpoint

    torch.manual_seed(3)
    backbone = models.create("resnet10_cifar", in_chans=3, width=4)
    path = tmp_path / "ssl.safetensors"
    save_checkpoint({**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                     "projector.weight": torch.zeros(2, 2)}, path)
    built = build_run(load_config("vcgan_color_clips", TINY + [f"task.args.init={path}"]),
                      with_strategy=False)
    generator = built.task.model.generator
    for extractor in (generator.global_extractor, generator.placeholder_extractor):
        own = extractor.state_dict()
        assert all(torch.equal(own[k], v) for k, v in backbone.state_dict().items())
    with pytest.raises(ConfigError, match="task.args.init"):
        build_run(load_config("vcgan_color_clips",
                              TINY + ["model.args.width=8", f"task.args.init={path}"]),
                  with_strategy=False)
