"""The shared video I/O module: frames, timestamps, seeking, audio, and loud failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avfed.video import (
    AudioChunk,
    VideoFrame,
    VideoReadError,
    VideoWriter,
    iter_frames,
    iter_media,
    probe_video,
    read_audio,
    read_frames,
    write_video,
)
from avfed.video import io as video_io
from avfed.video.sampling import clip_indices, random_clip_start, uniform_clip_starts

FPS, RATE = 25, 16000


def ramp_frames(num: int = 50, height: int = 32, width: int = 48) -> np.ndarray:
    """Frames whose red channel encodes their index, so order and seeking are checkable."""
    frames = np.full((num, height, width, 3), 128, np.uint8)
    frames[..., 0] = (np.arange(num) * 5)[:, None, None]
    return frames


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "ramp.mp4"
    tone = 0.4 * np.sin(2 * np.pi * 500 * np.arange(2 * RATE) / RATE)
    write_video(path, ramp_frames(), FPS, audio=tone[None].astype(np.float32), audio_rate=RATE)
    return path


def test_round_trip_keeps_frames_rate_and_audio(clip_with_audio: Path) -> None:
    info = probe_video(clip_with_audio)
    assert (info.fps, info.num_frames, info.width, info.height) == (FPS, 50, 48, 32)
    assert info.has_audio and info.audio_rate == RATE
    frames, times = read_frames(clip_with_audio)
    assert frames.shape == (50, 32, 48, 3)
    np.testing.assert_allclose(times, np.arange(50) / FPS, atol=1e-6)
    red = frames[..., 0].mean(axis=(1, 2))
    assert np.abs(red - np.arange(50) * 5).max() < 4  # lossy, but every frame in order
    samples, rate = read_audio(clip_with_audio)
    assert rate == RATE and samples.shape[0] == 1
    assert abs(samples.shape[1] - 2 * RATE) < 2048  # AAC pads to whole 1024-sample frames
    spectrum = np.abs(np.fft.rfft(samples[0]))
    assert abs(np.argmax(spectrum) * rate / samples.shape[1] - 500) < 2


def test_seek_starts_at_the_asked_time(clip_with_audio: Path) -> None:
    frames, times = read_frames(clip_with_audio, start_s=1.0, num_frames=4)
    np.testing.assert_allclose(times, 1.0 + np.arange(4) / FPS, atol=1e-6)
    assert abs(frames[0, ..., 0].mean() - 25 * 5) < 4
    window = list(iter_frames(clip_with_audio, start_s=0.4, end_s=0.6))
    assert [f.index for f in window] == list(range(len(window))) and len(window) == 5


def test_media_interleaves_both_tracks(clip_with_audio: Path) -> None:
    items = list(iter_media(clip_with_audio, audio_rate=8000))
    frames = [x for x in items if isinstance(x, VideoFrame)]
    chunks = [x for x in items if isinstance(x, AudioChunk)]
    assert len(frames) == 50 and chunks and all(c.rate == 8000 for c in chunks)
    assert sum(c.samples.shape[1] for c in chunks) == pytest.approx(2 * 8000, abs=1024)


def test_without_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    write_video(path, ramp_frames(5), FPS)
    assert read_audio(path) is None and not probe_video(path).has_audio


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50])
def test_unreadable_files_name_themselves(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoReadError, match="broken.mp4"):
        read_frames(path)


def test_truncated_file_is_an_error_not_a_short_clip(tmp_path: Path,
                                                     clip_with_audio: Path) -> None:
    path = tmp_path / "cut.mp4"
    path.write_bytes(clip_with_audio.read_bytes()[:2500])
    with pytest.raises(VideoReadError, match="cut.mp4"):
        read_frames(path)


def test_missing_file_and_start_past_end(clip_with_audio: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match="no such file"):
        read_frames(tmp_path / "absent.mp4")
    with pytest.raises(VideoReadError, match="no frames decoded"):
        read_frames(clip_with_audio, start_s=10.0)


def test_frames_of_changing_size_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = [(8, 8, 3), (8, 8, 3), (6, 8, 3)]
    fake = [VideoFrame(np.zeros(s, np.uint8), i / FPS, i) for i, s in enumerate(sizes)]
    monkeypatch.setattr(video_io, "iter_frames", lambda *a, **k: iter(fake))
    with pytest.raises(VideoReadError, match="frame 2 is 8×6"):
        video_io.read_frames("stream.mp4")


def test_writer_checks_its_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", FPS, 15, 16)
    with VideoWriter(tmp_path / "w.mp4", FPS, 16, 16) as writer:
        with pytest.raises(ValueError, match=r"\(16, 16, 3\) uint8"):
            writer.write(np.zeros((16, 16, 3), np.float32))
        with pytest.raises(ValueError, match="without audio_rate"):
            writer.write_audio(np.zeros((1, 10), np.float32))
        writer.write(np.zeros((16, 16, 3), np.uint8))


def test_clip_sampling() -> None:
    np.testing.assert_array_equal(clip_indices(20, 4, 2, 3), [3, 5, 7, 9])
    np.testing.assert_array_equal(clip_indices(5, 4, 2, 0, pad="loop"), [0, 2, 4, 1])
    np.testing.assert_array_equal(clip_indices(5, 4, 2, 0, pad="repeat"), [0, 2, 4, 4])
    with pytest.raises(ValueError, match="needs 7 frames"):
        clip_indices(5, 4, 2, 0)
    rng = np.random.default_rng(0)
    starts = {random_clip_start(20, 4, 2, rng) for _ in range(200)}
    assert starts == set(range(14))  # every start at which the 7-frame span fits
    assert uniform_clip_starts(20, 4, 2, 3) == [0, 6, 13]
    assert uniform_clip_starts(20, 4, 2, 1) == [6]
