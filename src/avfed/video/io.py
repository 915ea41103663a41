"""Reading and writing video (and its audio track) through PyAV.

PyAV's wheel ships its own FFmpeg, so every container and codec FFmpeg reads works
without a system ``ffmpeg`` — files, HTTP/RTSP streams and webcams alike. Everything
here streams: frames are decoded one at a time with their presentation timestamps,
because the applications built on it (live heart rate, colorizing an hour-long video)
must run in constant memory and must know *when* each frame was shown, not just its
position — real streams change frame rate and drop frames.

Failures name the file: an unreadable, truncated or empty input raises
:class:`VideoReadError` (a ``ValueError``) rather than returning zeros a model would
happily train on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

Source = str | os.PathLike[str] | int


class VideoReadError(ValueError):
    """An input that cannot be used as video, with the file and the reason."""

    def __init__(self, source: object, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video before anything is decoded.

    ``num_frames`` and ``duration_s`` are ``None`` when the container does not record
    them (live streams, some webm files); ``fps`` is the average rate, which a
    variable-rate stream does not keep to — use each frame's ``time_s`` for timing.
    """

    path: str
    fps: float
    num_frames: int | None
    width: int
    height: int
    duration_s: float | None
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None


@dataclass
class VideoFrame:
    """One decoded frame: RGB pixels, the time it is shown at, its order in this read."""

    rgb: np.ndarray  # (H, W, 3) uint8
    time_s: float
    index: int


@dataclass
class AudioChunk:
    """A block of decoded audio: ``samples`` (channels, n) float32 in [-1, 1] from ``time_s``."""

    samples: np.ndarray
    time_s: float
    rate: int


def _is_url(text: str) -> bool:
    return "://" in text


def open_source(source: Source, options: dict[str, str] | None = None) -> Any:
    """Open a file, a URL or a webcam (an integer N means ``/dev/videoN``) for reading.

    A missing local path is reported as missing rather than as FFmpeg's generic error,
    because that is the mistake a user actually makes.
    """
    fmt = None
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        target, fmt = f"/dev/video{int(source)}", "v4l2"
    else:
        target = os.fspath(source)
        if not _is_url(target) and not Path(target).exists():
            raise VideoReadError(target, "no such file")
    try:
        return av.open(target, mode="r", format=fmt, options=options or {})
    except (av.FFmpegError, OSError) as error:
        raise VideoReadError(target, f"FFmpeg cannot open it ({error})") from error


def _video_stream(container: Any, source: object) -> Any:
    if not container.streams.video:
        raise VideoReadError(source, "has no video stream")
    return container.streams.video[0]


def _stream_fps(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe_video(source: Source) -> VideoInfo:
    """Read the container's header: frame rate, size, length and audio track, no decoding."""
    container = open_source(source)
    try:
        stream = _video_stream(container, source)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=str(source),
            fps=_stream_fps(stream),
            num_frames=stream.frames or None,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration_s=duration,
            has_audio=audio is not None,
            audio_rate=audio.rate if audio is not None else None,
            audio_channels=audio.channels if audio is not None else None,
        )
    finally:
        container.close()


def _frame_time(frame: Any, fallback_index: int, fps: float) -> float:
    if frame.time is not None:
        return float(frame.time)
    return fallback_index / fps if fps else float(fallback_index)


def iter_frames(source: Source, start_s: float = 0.0, end_s: float | None = None,
                ) -> Iterator[VideoFrame]:
    """Decode frames in ``[start_s, end_s)`` one at a time, in presentation order.

    Seeks to the key frame before ``start_s`` and decodes forward from there, so reading
    a clip from the middle of a long file costs a GOP, not the whole file. ``index``
    counts the frames this call yields (0, 1, …); ``time_s`` is the frame's timestamp.
    A decoding error after some frames (a truncated file) raises
    :class:`VideoReadError` saying how far it got.
    """
    container = open_source(source)
    yielded = 0
    try:
        stream = _video_stream(container, source)
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        if start_s > 0 and stream.time_base is not None:
            try:
                container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError:  # unseekable (a pipe, some streams): decode from the start
                pass
        decoded = 0
        try:
            for frame in container.decode(stream):
                time_s = _frame_time(frame, decoded, fps)
                decoded += 1
                if time_s < start_s - 1e-6:
                    continue
                if end_s is not None and time_s >= end_s:
                    break
                yield VideoFrame(frame.to_ndarray(format="rgb24"), time_s, yielded)
                yielded += 1
        except av.FFmpegError as error:
            raise VideoReadError(
                source, f"decoding failed after {yielded} frames ({error}); "
                "the file is truncated or corrupt") from error
    finally:
        container.close()


def read_frames(source: Source, start_s: float = 0.0, num_frames: int | None = None,
                end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode a run of frames into one array ``(T, H, W, 3)`` uint8 plus their times.

    Raises :class:`VideoReadError` when nothing decodes (an empty file, or a start past
    the end) and when frames change size mid-clip, since stacking them would need a
    resize the caller did not ask for.
    """
    frames: list[np.ndarray] = []
    times: list[float] = []
    for frame in iter_frames(source, start_s, end_s):
        if frames and frame.rgb.shape != frames[0].shape:
            raise VideoReadError(
                source, f"frame {frame.index} is {frame.rgb.shape[1]}×{frame.rgb.shape[0]} "
                f"but earlier frames are {frames[0].shape[1]}×{frames[0].shape[0]}")
        frames.append(frame.rgb)
        times.append(frame.time_s)
        if num_frames is not None and len(frames) >= num_frames:
            break
    if not frames:
        where = f" from {start_s:.3f} s" if start_s > 0 else ""
        raise VideoReadError(source, f"no frames decoded{where}")
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def _resampler(rate: int | None, mono: bool, stream: Any) -> Any:
    layout = "mono" if mono else stream.layout.name
    return av.AudioResampler(format="fltp", layout=layout, rate=rate or stream.rate)


def read_audio(source: Source, rate: int | None = None, mono: bool = True,
               ) -> tuple[np.ndarray, int] | None:
    """The whole audio track as ``(samples (C, N) float32, rate)``; ``None`` without one.

    Resampled to ``rate`` (default: the track's own) and mixed to mono unless
    ``mono=False``, through FFmpeg's resampler.
    """
    container = open_source(source)
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = _resampler(rate, mono, stream)
        blocks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                blocks.extend(f.to_ndarray() for f in resampler.resample(frame))
        except av.FFmpegError as error:
            raise VideoReadError(source, f"audio decoding failed ({error})") from error
        blocks.extend(f.to_ndarray() for f in resampler.resample(None))
        out_rate = rate or stream.rate
        channels = 1 if mono else stream.channels
        if not blocks:
            return np.zeros((channels, 0), np.float32), out_rate
        return np.concatenate(blocks, axis=1).astype(np.float32), out_rate
    finally:
        container.close()


def iter_media(source: Source, audio_rate: int | None = None,
               ) -> Iterator[VideoFrame | AudioChunk]:
    """Video frames and mono audio chunks interleaved in the order the container holds them.

    A live consumer (a heart-rate estimator, a player) sees both tracks as they arrive,
    each with its own timestamp, instead of reading one track to the end first.
    """
    container = open_source(source)
    try:
        video = _video_stream(container, source)
        audio = container.streams.audio[0] if container.streams.audio else None
        fps = _stream_fps(video)
        resampler = _resampler(audio_rate, True, audio) if audio is not None else None
        streams = [video] + ([audio] if audio is not None else [])
        index = 0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream is video:
                        yield VideoFrame(frame.to_ndarray(format="rgb24"),
                                         _frame_time(frame, index, fps), index)
                        index += 1
                    else:
                        start = float(frame.time) if frame.time is not None else 0.0
                        for block in resampler.resample(frame):
                            yield AudioChunk(block.to_ndarray().astype(np.float32), start,
                                             block.sample_rate)
        except av.FFmpegError as error:
            raise VideoReadError(source, f"decoding failed after {index} frames ({error})"
                                 ) from error
    finally:
        container.close()


class VideoWriter:
    """Encode RGB frames (and optionally an audio track) into a video file.

    Use as a context manager so the encoders are flushed and the file is finalised even
    when the caller fails half-way; frames are written as they come, so memory does not
    grow with the length of the video.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int,
                 audio_rate: int | None = None, audio_channels: int = 1, crf: int = 18,
                 codec: str = "libx264") -> None:
        if width % 2 or height % 2:
            raise ValueError(f"{path}: width and height must be even for yuv420p video, "
                             f"got {width}×{height}")
        if fps <= 0:
            raise ValueError(f"{path}: fps must be positive, got {fps}")
        self.path = os.fspath(path)
        self.width, self.height = width, height
        self._container = av.open(self.path, mode="w")
        self._video = self._container.add_stream(
            codec, rate=Fraction(fps).limit_denominator(1001))
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = None
        self._audio_channels = audio_channels
        if audio_rate is not None:
            self._audio = self._container.add_stream("aac", rate=audio_rate)
            self._audio.layout = "mono" if audio_channels == 1 else "stereo"
        self.frames_written = 0
        self._samples_written = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 frame."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected a ({self.height}, {self.width}, 3) uint8 "
                             f"frame, got {rgb.shape} {rgb.dtype}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Append audio ``(channels, n)`` float32 in [-1, 1] at the writer's audio rate."""
        if self._audio is None:
            raise ValueError(f"{self.path}: the writer was opened without audio_rate")
        block = np.ascontiguousarray(np.atleast_2d(samples), dtype=np.float32)
        if block.shape[0] != self._audio_channels:
            raise ValueError(f"{self.path}: expected {self._audio_channels} audio channels, "
                             f"got {block.shape[0]}")
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=self._audio.layout.name)
        frame.sample_rate = self._audio.rate
        frame.pts = self._samples_written
        frame.time_base = Fraction(1, self._audio.rate)
        self._samples_written += block.shape[1]
        for packet in self._audio.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for stream in (self._video, self._audio):
            if stream is not None:
                for packet in stream.encode(None):
                    self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(path: str | os.PathLike[str], frames: np.ndarray | Iterable[np.ndarray],
                fps: float, audio: np.ndarray | None = None, audio_rate: int | None = None,
                **options: Any) -> int:
    """Write frames (an array ``(T, H, W, 3)`` uint8 or any iterable of frames) and audio.

    Returns the number of frames written.
    """
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    if audio is not None and audio_rate is None:
        raise ValueError(f"{path}: audio given without audio_rate")
    channels = 1 if audio is None else np.atleast_2d(audio).shape[0]
    with VideoWriter(path, fps, first.shape[1], first.shape[0], audio_rate=audio_rate,
                     audio_channels=channels, **options) as writer:
        writer.write(first)
        for frame in iterator:
            writer.write(frame)
        if audio is not None:
            writer.write_audio(np.atleast_2d(audio))
        return writer.frames_written
