"""The input video with the face box and the live heart rate drawn on it.

Frames keep their own timestamps (a variable-rate input stays variable-rate), so the
overlay plays in step with the original.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def draw(rgb: np.ndarray, box: tuple[float, float, float, float] | None,
         row: dict | None) -> np.ndarray:
    """A copy of ``rgb`` with the face box and the latest BPM (or the status) drawn."""
    import cv2

    out = np.ascontiguousarray(rgb).copy()
    scale = max(0.4, out.shape[1] / 640)
    if box is not None:
        x, y, w, h = (int(round(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), max(1, int(2 * scale)))
    if row is None:
        text = "warming up"
    elif row.get("bpm") is not None:
        text = f"{row['bpm']:.0f} BPM  ({row['method']}, conf {row['confidence']:.2f})"
    else:
        text = f"-- BPM  ({row['status']})"
    origin = (int(10 * scale), int(30 * scale))
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0),
                max(2, int(4 * scale)), cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255),
                max(1, int(2 * scale)), cv2.LINE_AA)
    return out


class OverlayWriter:
    """Writes drawn frames to an MP4 (H.264, millisecond timestamps), opened on the first
    frame so its size is the input's."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._container = None
        self._stream = None
        self._last_pts = -1
        self.frames_written = 0

    def write(self, rgb: np.ndarray, box, row: dict | None, time_s: float) -> None:
        import av

        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), "w")
            self._stream = self._container.add_stream("libx264", rate=1000)
            self._stream.width, self._stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = Fraction(1, 1000)
            self._stream.options = {"crf": "23", "preset": "veryfast"}
        assert self._stream is not None
        pts = int(round(time_s * 1000))
        if pts <= self._last_pts:
            return  # a frame the estimator refused for its timestamp is not drawn either
        drawn = draw(rgb, box, row)[: self._stream.height, : self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn), format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        self._container.mux(self._stream.encode(frame))
        self._last_pts = pts
        self.frames_written += 1

    def close(self) -> None:
        if self._container is not None and self._stream is not None:
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None
