"""Where the face is, and the mean colour of its skin, frame after frame.

A Haar cascade (OpenCV's bundled frontal-face model, no download) finds the face every
``detect_every`` frames on a downscaled grey image; between detections the box follows
the face by template matching in a small search window, which costs a fraction of a
detection. So detection is never the pipeline's bottleneck, and a face lost by the
tracker (a poor match) triggers a fresh detection on the next frame.

The colour signal rPPG needs is the mean RGB of the face's *skin*: the inner part of the
box (forehead and cheeks, where the pulse is strongest and hair and background are not),
keeping pixels inside the YCrCb skin box. A smoothed box keeps the region steady, since
a jittering region adds more colour noise than the pulse itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # x, y, w, h in full-frame pixels


@dataclass
class FaceObservation:
    """One frame's face: its box, whether a detection (not tracking) placed it, the skin
    region's mean RGB (0–255) and the fraction of that region that is skin."""

    box: Box
    detected: bool
    mean_rgb: np.ndarray
    skin_fraction: float


def _cascade():
    import cv2

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's face cascade could not be loaded from {path} "
                           "(opencv-python-headless 4.x ships it; 5.x does not)")
    return cascade


def skin_pixels(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of skin-coloured pixels (YCrCb box of Chai & Ngan, 1999)."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    return cv2.inRange(ycc, (40, 133, 77), (255, 180, 130)) > 0


def skin_region(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The inner part of a face box rPPG reads (x0, y0, x1, y1): the middle 60 % of its
    width, from the forehead (10 %) to the upper lip (80 %), clipped to the frame."""
    x, y, w, h = box
    x0, x1 = int(x + 0.2 * w), int(x + 0.8 * w)
    y0, y1 = int(y + 0.1 * h), int(y + 0.8 * h)
    return (max(0, x0), max(0, y0), min(width, max(x0 + 1, x1)), min(height, max(y0 + 1, y1)))


def mean_skin_rgb(rgb: np.ndarray, box: Box, step: int = 1,
                  mask: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """Mean RGB over the skin pixels of ``box``'s inner region (every ``step``-th pixel),
    the skin fraction, and the mask used (the whole region when under 10 % is skin).

    Pass the mask back in to keep the same pixels frame after frame: re-selecting skin
    every frame lets pixels near the colour threshold flip in and out *with the pulse*
    (which changes their colour), and that selection effect can outweigh the pulse.
    """
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = skin_region(box, w, h)
    patch = np.ascontiguousarray(rgb[y0:y1:step, x0:x1:step])
    if patch.size == 0:
        return np.full(3, np.nan), 0.0, np.zeros(0, bool)
    if mask is None or mask.shape != patch.shape[:2]:
        mask = skin_pixels(patch)
        if mask.mean() < 0.1:
            mask = np.ones(patch.shape[:2], bool)
    import cv2

    mean = cv2.mean(patch, mask.astype(np.uint8))[:3]
    return np.asarray(mean, np.float64), float(mask.mean()), mask


def face_crop(rgb: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The face box resized to ``size``×``size`` (uint8 RGB), area-averaged."""
    import cv2

    h, w = rgb.shape[:2]
    x, y, bw, bh = box
    x0, y0 = int(max(0, x)), int(max(0, y))
    x1, y1 = int(min(w, x + bw)), int(min(h, y + bh))
    patch = rgb[y0:max(y0 + 1, y1), x0:max(x0 + 1, x1)]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


class FaceTracker:
    """Detect every ``detect_every`` frames, track in between; see the module docstring.

    ``detect_width`` is the width the frame is shrunk to for detection and tracking
    (the box is reported in full-frame pixels); ``skin_step`` subsamples the skin region
    (a further step of one per 64 pixels of face width keeps large faces cheap).
    """

    def __init__(self, detect_every: int = 10, detect_width: int = 160,
                 min_face_frac: float = 0.12, min_match: float = 0.5,
                 skin_step: int = 1) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detect_every, self.detect_width = detect_every, detect_width
        self.min_face_frac, self.min_match = min_face_frac, min_match
        self.skin_step = skin_step
        self._cascade = _cascade()
        self.reset()

    def reset(self) -> None:
        self.box: Box | None = None
        self._template: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._since_detect = 0
        self.detections = 0

    def _small_grey(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_width / w)
        small = rgb if scale == 1.0 else cv2.resize(
            rgb, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), scale

    def _detect(self, grey: np.ndarray, scale: float) -> Box | None:
        side = max(12, int(self.min_face_frac * min(grey.shape)))
        faces = self._cascade.detectMultiScale(grey, scaleFactor=1.15, minNeighbors=4,
                                               minSize=(side, side))
        self.detections += 1
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])  # the largest face
        return (x / scale, y / scale, w / scale, h / scale)

    def _track(self, grey: np.ndarray, scale: float) -> Box | None:
        import cv2

        if self.box is None or self._template is None:
            return None
        th, tw = self._template.shape
        x, y = self.box[0] * scale, self.box[1] * scale
        margin = int(0.25 * max(tw, th)) + 2
        x0, y0 = int(max(0, x - margin)), int(max(0, y - margin))
        x1 = int(min(grey.shape[1], x + tw + margin))
        y1 = int(min(grey.shape[0], y + th + margin))
        window = grey[y0:y1, x0:x1]
        if window.shape[0] < th or window.shape[1] < tw:
            return None
        scores = cv2.matchTemplate(window, self._template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if best < self.min_match:
            return None
        return ((x0 + bx) / scale, (y0 + by) / scale, self.box[2], self.box[3])

    def _remember(self, grey: np.ndarray, scale: float, box: Box) -> None:
        x, y, w, h = (int(round(v * scale)) for v in box)
        patch = grey[max(0, y):y + h, max(0, x):x + w]
        self._template = patch.copy() if patch.size and min(patch.shape) > 4 else None

    def update(self, rgb: np.ndarray) -> FaceObservation | None:
        """The face in this frame, or ``None`` when there is none to be found.

        The box moves only with the tracker; a periodic detection re-anchors it (box and
        template) only when it disagrees with the tracked box, because re-placing a box
        by a pixel every N frames would put a step of N-frame period into the colour
        signal, right in the heart-rate band.
        """
        grey, scale = self._small_grey(rgb)
        detected = False
        if self.box is None:
            new = self._detect(grey, scale)
            detected = new is not None
        else:
            new = self._track(grey, scale)
            self._since_detect += 1
            if new is None or self._since_detect >= self.detect_every:
                found = self._detect(grey, scale)
                self._since_detect = 0
                if found is not None and (new is None or _disagree(found, new)):
                    new, detected = found, True
        if new is None:
            self.box, self._template, self._mask = None, None, None
            return None
        self.box = new
        if detected:
            self._remember(grey, scale, new)
            self._mask = None  # a new anchor selects its skin pixels afresh
        step = max(1, int(new[2]) // 64) * self.skin_step
        mean, fraction, self._mask = mean_skin_rgb(rgb, new, step, self._mask)
        return FaceObservation(new, detected, mean, fraction)


def _disagree(a: Box, b: Box, tolerance: float = 0.2) -> bool:
    """Whether two boxes differ by more than ``tolerance`` of their size in position or
    size (then a detection should replace the tracked box)."""
    size = max(a[2], b[2], 1.0)
    return (abs(a[0] - b[0]) > tolerance * size or abs(a[1] - b[1]) > tolerance * size
            or abs(a[2] - b[2]) > tolerance * size)
