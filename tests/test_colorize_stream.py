"""``avfed colorize run``: a generated video with audio in, a colorized one out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfed.colorize.checkpoint import save_colorizer
from avfed.colorize.generator import GeneratorSpec, build_generator
from avfed.colorize.stream import colorize_video, model_size
from avfed.video import (
    VideoFrame,
    VideoReadError,
    probe_video,
    read_audio,
    read_frames,
    write_video,
)

RATE = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    torch.manual_seed(0)
    spec = GeneratorSpec(base=4, depth=3, extractor_args={"width": 4}, image_size=16)
    generator = build_generator(spec).eval()
    path = save_colorizer(generator, tmp_path_factory.mktemp("ckpt") / "colorizer.safetensors")
    return generator, path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """12 colour frames of 40×64 at 8 fps with 1.5 s of a tone."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (40, 80, 3), np.uint8)
    frames = np.stack([base[:, t:t + 64] for t in range(12)])
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * RATE)) / RATE)).astype(np.float32)
    path = tmp_path_factory.mktemp("video") / "in.mp4"
    write_video(path, frames, fps=8, audio=tone[None], audio_rate=RATE)
    return path


def test_model_size_keeps_aspect_and_multiples():
    assert model_size(256, 448, 64, 16) == (64, 112)
    assert model_size(1080, 1920, 64, 32) == (64, 128)


def test_colorize_keeps_frames_fps_audio_and_luminance(colorizer, source, tmp_path):
    generator, _ = colorizer
    out = tmp_path / "out.mp4"
    seen = []
    result = colorize_video(source, out, generator, progress=lambda d, t: seen.append((d, t)))
    info_in, info_out = probe_video(source), probe_video(out)
    assert result.frames == 12 and info_out.num_frames == info_in.num_frames == 12
    assert info_out.fps == info_in.fps == 8
    assert (info_out.width, info_out.height) == (64, 40) and result.model_size == (16, 24)
    assert seen[-1] == (12, 12)
    audio_in, audio_out = read_audio(source), read_audio(out)
    assert audio_out is not None and audio_out[1] == RATE
    assert abs(audio_out[0].shape[1] - audio_in[0].shape[1]) <= RATE // 20
    # the source's luminance survives at full resolution (up to the codec)
    frames_in, _ = read_frames(source)
    frames_out, _ = read_frames(out)

    def luma(f: np.ndarray) -> np.ndarray:
        return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114

    assert np.abs(luma(frames_in.astype(float)) - luma(frames_out.astype(float))).mean() < 6
    assert frames_out.std(axis=-1).mean() > 1.0  # and it is not gray


def test_bad_inputs_give_clear_errors(colorizer, source, tmp_path, monkeypatch):
    generator, _ = colorizer
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 50)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        colorize_video(corrupt, tmp_path / "o1.mp4", generator)
    import avfed.video

    def frames_of(*shapes):
        def fake(*args, **kwargs):
            for i, shape in enumerate(shapes):
                yield VideoFrame(np.zeros(shape, np.uint8), i / 8, i)
        return fake

    monkeypatch.setattr(avfed.video, "iter_media", frames_of((40, 64, 3), (48, 64, 3)))
    with pytest.raises(VideoReadError, match="one frame size"):
        colorize_video(source, tmp_path / "o2.mp4", generator)
    monkeypatch.setattr(avfed.video, "iter_media", frames_of())
    with pytest.raises(VideoReadError, match="no video frames"):
        colorize_video(source, tmp_path / "o3.mp4", generator)
    assert not any(tmp_path.glob("o*.mp4")) and not any(tmp_path.glob(".o*"))


def test_cli_colorize_run(colorizer, source, tmp_path):
    from avfed.cli import main

    _, checkpoint = colorizer
    out = tmp_path / "cli.mp4"
    assert main(["colorize", "run", str(source), str(out), "--checkpoint", str(checkpoint),
                 "--per-frame"]) == 0
    assert probe_video(out).num_frames == 12
    assert main(["colorize", "run", str(source), str(out), "--checkpoint",
                 str(tmp_path / "missing.safetensors")]) == 2


def test_a_cut_restarts_the_recurrence(colorizer):
    import cv2

    from avfed.colorize.stream import FrameColorizer

    generator, _ = colorizer
    rng = np.random.default_rng(1)

    def texture() -> np.ndarray:
        noise = rng.integers(0, 255, (48, 96, 3)).astype(np.float32)
        return cv2.GaussianBlur(noise, (0, 0), 2.0) * 2.5 - 190

    # a dark shot, then a bright one
    shots = [np.clip(texture() * 0.4 + offset, 0, 255).astype(np.uint8) for offset in (20, 150)]
    frames = [shot[:, t:t + 64] for shot in shots for t in range(3)]
    colorize = FrameColorizer(generator)
    for frame in frames:
        assert colorize(frame).shape == (48, 64, 3)
    assert colorize.cuts == 1
