"""Video I/O and clip sampling shared by every video feature (SSL, heart rate, colorization)."""

from avfed.video.io import (
    AudioChunk,
    VideoFrame,
    VideoInfo,
    VideoReadError,
    VideoWriter,
    iter_frames,
    iter_media,
    open_source,
    probe_video,
    read_audio,
    read_frames,
    write_video,
)

__all__ = [
    "AudioChunk",
    "VideoFrame",
    "VideoInfo",
    "VideoReadError",
    "VideoWriter",
    "iter_frames",
    "iter_media",
    "open_source",
    "probe_video",
    "read_audio",
    "read_frames",
    "write_video",
]
