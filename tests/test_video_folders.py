"""UCF-101, HMDB-51 and Kinetics-style folders, on tiny trees of real encoded videos:
official splits, bad files skipped and counted, unusable data refused before training."""

from pathlib import Path

import numpy as np
import pytest
import torch

from avfed.build import build_run
from avfed.config import ConfigError, load_config
from avfed.data.sources.video_folders import decode_video, load_hmdb51, load_ucf101
from avfed.video import write_video

CLASSES = ("Bounce", "Slide", "Spin")
FRAMES = 12


def _clip(label: int, seed: int) -> np.ndarray:
    """A bright square that moves in a class-specific direction over noise, 24×32."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((FRAMES, 24, 32, 3)) * 60).astype(np.uint8)
    for t in range(FRAMES):
        x, y = [(2 + t, 8), (20 - t, 8), (12, 2 + t)][label]
        frames[t, y : y + 6, x : x + 6] = 230
    return frames


def _write(path: Path, label: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, _clip(label, seed), fps=8, codec="mpeg4")
    return path


def _bad_files(folder: Path) -> list[Path]:
    """A file of garbage, a zero-byte file, and a real video cut short."""
    folder.mkdir(parents=True, exist_ok=True)
    garbage, empty, truncated = (folder / n for n in ("garbage.avi", "empty.avi", "cut.avi"))
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    empty.write_bytes(b"")
    whole = _write(folder / "whole.avi", 0, 99).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 4])
    (folder / "whole.avi").unlink()
    return [garbage, empty, truncated]


def _ucf_tree(root: Path, with_test_list: bool = True) -> list[str]:
    videos = root / "UCF-101"
    train, test = [], []
    for label, name in enumerate(CLASSES):
        for group in (1, 2, 3, 4):
            rel = f"{name}/v_{name}_g{group:02d}_c01.avi"
            _write(videos / rel, label, label * 10 + group)
            (test if group == 1 else train).append(rel)
    bad = _bad_files(videos / CLASSES[0])
    train += [f"{CLASSES[0]}/{p.name}" for p in bad] + [f"{CLASSES[1]}/v_gone_g09_c01.avi"]
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASSES)))
    (lists / "trainlist01.txt").write_text("".join(f"{r} {CLASSES.index(r.split('/')[0]) + 1}\n"
                                                   for r in train))
    if with_test_list:
        (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r in test))
    return train


def test_decode_takes_frames_from_the_middle_resized_square(tmp_path):
    path = _write(tmp_path / "a.avi", 0, 1)
    clip = decode_video(path, num_frames=4, stride=2, size=16)
    assert clip.shape == (3, 4, 16, 16) and clip.dtype == np.uint8


def test_ucf101_official_split_and_bad_files_counted(tmp_path):
    _ucf_tree(tmp_path)
    with pytest.warns(RuntimeWarning) as caught:
        train, test = load_ucf101(tmp_path, split=1, num_frames=8, stride=1, size=16)
    assert train.images.shape == (9, 3, 8, 16, 16) and len(test) == 3
    assert sorted(np.bincount(train.labels).tolist()) == [3, 3, 3]
    assert set(test.groups.tolist()) == {1} and 1 not in set(train.groups.tolist())
    skipped = {p.path.name for p in train.skipped}
    assert skipped == {"garbage.avi", "empty.avi", "cut.avi", "v_gone_g09_c01.avi"}
    messages = " ".join(str(w.message) for w in caught)
    assert all(name in messages for name in skipped)  # each warning names its file


def test_ucf_recipe_runs_one_tiny_round_and_counts_skipped_files(tmp_path, monkeypatch):
    from avfed.central import run_central
    from avfed.runs import RunDir

    _ucf_tree(tmp_path / "ucf")
    torch.set_num_threads(1)
    overrides = [f"data.root={tmp_path / 'ucf'}", "device=cpu", "fl.rounds=1",
                 "fl.num_clients=2", "fl.fraction_train=1.0", "data.partitioner=iid",
                 "data.image_size=16", "data.video.num_frames=8", "data.video.frame_stride=1",
                 "task.args.pretext_args.clip_len=4", "model.args.width=4",
                 "train.batch_size=4", "eval.probe_max_iter=50"]
    cfg = load_config("fedvssl_ucf101", overrides)
    assert cfg.model.name == "r3d_18" and cfg.data.image_size == 16
    with pytest.warns(RuntimeWarning, match="skipping"):
        built = build_run(cfg)
    assert len(built.skipped_files) == 4
    summary = run_central(built, RunDir.create(cfg, tmp_path / "run"))
    assert len(summary["skipped_files"]) == 4
    assert 0.0 <= summary["final"]["recall@1"] <= 1.0


def test_missing_split_file_warns_and_falls_back(tmp_path):
    _ucf_tree(tmp_path, with_test_list=False)
    with pytest.warns(RuntimeWarning, match="testlist01.txt"):
        everything, held_out = load_ucf101(tmp_path, split=1, num_frames=8, stride=1, size=16)
    assert held_out is None and len(everything) == 12
    assert any("split file missing" in s.reason for s in everything.skipped)


def test_hmdb51_splits(tmp_path):
    for label, name in enumerate(CLASSES[:2]):
        lines = []
        for i in range(4):
            _write(tmp_path / name / f"{name}_{i}.avi", label, label * 10 + i)
            lines.append(f"{name}_{i}.avi {2 if i == 0 else (0 if i == 3 else 1)}")
        splits = tmp_path / "testTrainMulti_7030_splits"
        splits.mkdir(exist_ok=True)
        (splits / f"{name}_test_split1.txt").write_text("\n".join(lines) + "\n")
    train, test = load_hmdb51(tmp_path, split=1, num_frames=8, stride=1, size=16)
    assert len(train) == 4 and len(test) == 2  # the "0" lines are not used
    assert train.classes == list(CLASSES[:2])


def test_unusable_dataset_is_an_error_before_training(tmp_path):
    for name in CLASSES[:2]:
        _bad_files(tmp_path / name)
    cfg = load_config("fedvssl_moving_digits", [
        "data.source=kinetics_folder", f"data.root={tmp_path}", "data.video.num_frames=8",
        "task.args.pretext_args.clip_len=4"])
    with pytest.warns(RuntimeWarning), pytest.raises(ConfigError, match="decode"):
        build_run(cfg)


def test_kinetics_style_folder_with_its_own_validation_split(tmp_path):
    from avfed.data.sources.video_folders import load_video_folder

    for split, count in (("train", 3), ("val", 1)):
        for label, name in enumerate(CLASSES[:2]):
            for i in range(count):
                _write(tmp_path / split / name / f"{i}.mp4", label, label * 10 + i)
    train, held_out = load_video_folder(tmp_path, num_frames=8, stride=1, size=16)
    assert len(train) == 6 and held_out is not None and len(held_out) == 2
    assert train.classes == held_out.classes == list(CLASSES[:2])
    assert sorted(held_out.labels.tolist()) == [0, 1]
