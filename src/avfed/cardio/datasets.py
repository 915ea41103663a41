"""Training windows for CardioNet, and readers for the UBFC-rPPG and PURE folder layouts.

A training example is one window: face crops on a uniform grid, the audio of the same
stretch, and the mean true heart rate over it. Crops come from the same face tracker
the live pipeline uses (so the network sees what it will see in service), put on the
uniform grid by timestamp, whatever the clip's frame rate did.

avfed's data containers hold one float tensor per split, so a window is packed into one
row ``[1, 1, D]``: a 4-number header (BPM, frames, crop side, audio samples), the crops
and the audio; :func:`unpack_windows` undoes it. The header makes a packed tensor
self-describing, so the task never has to be told the layout.

Recorded corpora (not shipped; a user points at their copy):

* **UBFC-rPPG** (Bobbia et al., 2019): ``<root>/<subject>/vid.avi`` with
  ``ground_truth.txt`` (DATASET_2: three lines — PPG trace, heart rate, time in s) or
  ``gtdump.xmp`` (DATASET_1: CSV rows of time in ms, heart rate, SpO2, PPG).
* **PURE** (Stricker et al., 2014): ``<root>/<NN-NN>/Image<ns>.png`` frames and
  ``<root>/<NN-NN>.json`` (or inside the folder) with ``/FullPackage`` (pulse-oximeter
  samples: ``Timestamp`` in ns, ``Value.pulseRate``) and ``/Image`` (frame timestamps).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avfed.cardio.face import FaceTracker, face_crop
from avfed.cardio.timeline import SampleTimeline

HEADER = 4


@dataclass(frozen=True)
class WindowSpec:
    """How clips are cut into CardioNet examples."""

    window_s: float = 6.0
    stride_s: float = 1.0
    crop_rate: float = 16.0
    crop_size: int = 12
    audio_rate: int = 1000  # speech below 500 Hz: voicing and the first formant

    @property
    def frames(self) -> int:
        return int(round(self.window_s * self.crop_rate))

    @property
    def samples(self) -> int:
        return int(round(self.window_s * self.audio_rate))


def track_crops(frames: Iterator[tuple[np.ndarray, float]] | list, crop_size: int,
                detect_every: int = 10) -> tuple[SampleTimeline, int]:
    """Face crops of every frame with a face, on a timeline; and how many had none."""
    tracker = FaceTracker(detect_every=detect_every)
    timeline = SampleTimeline(horizon_s=1e9)
    missing = 0
    for rgb, t in frames:
        face = tracker.update(rgb)
        if face is None:
            missing += 1
            continue
        timeline.add(t, face_crop(rgb, face.box, crop_size))
    return timeline, missing


def clip_windows(clip, spec: WindowSpec) -> dict[str, np.ndarray]:
    """Windows of one :class:`~avfed.cardio.pulse_av.PulseClip`: ``crops`` uint8
    ``[n, T, S, S, 3]``, ``audio`` float32 ``[n, A]``, ``bpm`` ``[n]``, ``start`` ``[n]``."""
    from scipy.signal import resample_poly

    from avfed.cardio.pulse_av import AUDIO_RATE

    timeline, _ = track_crops(zip(clip.frames, clip.frame_times, strict=True), spec.crop_size)
    audio = None
    if clip.audio is not None:
        g = np.gcd(AUDIO_RATE, spec.audio_rate)
        audio = resample_poly(clip.audio, spec.audio_rate // g, AUDIO_RATE // g)
    out: dict[str, list] = {"crops": [], "audio": [], "bpm": [], "start": []}
    start = float(clip.frame_times[0])
    while start + spec.window_s <= clip.frame_times[-1] + 1e-9:
        window = timeline.window(start, start + spec.window_s, spec.crop_rate)
        if window is not None and len(window[1]) >= spec.frames - 1:
            crops = np.pad(window[1], [(0, max(0, spec.frames - len(window[1])))] +
                           [(0, 0)] * 3, mode="edge")[: spec.frames]
            first = int(round((start - clip.audio_start_s) * spec.audio_rate))
            wave = np.zeros(spec.samples, np.float32)
            if audio is not None and first >= 0 and first + spec.samples <= len(audio):
                wave = audio[first:first + spec.samples].astype(np.float32)
            out["crops"].append(np.clip(crops + 0.5, 0, 255).astype(np.uint8))
            out["audio"].append(wave)
            out["bpm"].append(clip.true_bpm(start, start + spec.window_s))
            out["start"].append(start)
        start += spec.stride_s
    return {k: np.asarray(v) for k, v in out.items()}


def pulse_av_windows(num_subjects: int, duration_s: float = 30.0, seed: int = 0,
                     spec: WindowSpec | None = None, size: tuple[int, int] = (160, 120),
                     cache: bool = True) -> dict[str, np.ndarray]:
    """Every subject's windows (``subject`` says whose). Cached per subject, so a run
    with fewer subjects reuses what a larger one generated (subject ``i`` is the same
    whatever the number of subjects)."""
    from avfed.cardio.pulse_av import subject_table

    spec = spec or WindowSpec()
    parts: dict[str, list] = {"crops": [], "audio": [], "bpm": [], "start": [], "subject": []}
    for subject in subject_table(num_subjects, seed):
        windows = _subject_windows(subject, duration_s, seed, spec, size, cache)
        for k, v in windows.items():
            parts[k].append(v)
        parts["subject"].append(np.full(len(windows["bpm"]), subject.id))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _subject_windows(subject, duration_s: float, seed: int, spec: WindowSpec,
                     size: tuple[int, int], cache: bool) -> dict[str, np.ndarray]:
    from dataclasses import asdict

    from avfed.cardio.pulse_av import cache_dir, render_clip

    key = hashlib.sha1(json.dumps([asdict(subject), duration_s, seed, list(size),
                                   asdict(spec), 3]).encode()).hexdigest()[:16]
    path = cache_dir() / "windows" / f"s{subject.id}_{key}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    windows = clip_windows(render_clip(subject, duration_s, size=size, seed=seed), spec)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{os.getpid()}.{path.name}")
        np.savez(tmp, **windows)
        tmp.replace(path)
    return windows


def pack_windows(crops: np.ndarray, audio: np.ndarray, bpm: np.ndarray) -> torch.Tensor:
    """``[N, 1, 1, 4 + T·S·S·3 + A]`` float32 rows: header, crops (0–255), audio."""
    n, t, s = crops.shape[:3]
    header = np.stack([bpm, np.full(n, t), np.full(n, s), np.full(n, audio.shape[1])], 1)
    rows = np.concatenate([header, crops.reshape(n, -1), audio.reshape(n, -1)], 1)
    return torch.from_numpy(rows.astype(np.float32))[:, None, None, :]


def unpack_windows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(bpm [N], video [N, T, 3, S, S], audio [N, A])`` from :func:`pack_windows` rows."""
    rows = x.reshape(len(x), -1)
    if rows.shape[1] < HEADER:
        raise ValueError(f"packed windows need a {HEADER}-number header, got {rows.shape}")
    t, s, a = (int(v) for v in rows[0, 1:HEADER].tolist())
    if rows.shape[1] != HEADER + t * s * s * 3 + a:
        raise ValueError(f"packed window of {rows.shape[1]} numbers does not match its "
                         f"header (T={t}, S={s}, A={a})")
    video = rows[:, HEADER:HEADER + t * s * s * 3].reshape(len(x), t, s, s, 3)
    return rows[:, 0], video.permute(0, 1, 4, 2, 3).contiguous(), rows[:, HEADER + t * s * s * 3:]


# -- recorded corpora ----------------------------------------------------------------------

@dataclass
class Recording:
    """One recorded session: where its frames are, and its reference heart rate."""

    name: str
    subject: str
    video: Path | None  # a video file, or None when frames are image files
    image_files: list[Path]
    frame_times: np.ndarray | None  # s; None for a video file (its own timestamps)
    hr_times: np.ndarray  # s
    hr: np.ndarray  # BPM

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """``(rgb, time_s)`` in order."""
        if self.video is not None:
            # UBFC's videos are constant-rate; AVI carries no presentation times for
            # reordered frames, so time is the frame's index over the stream's rate
            from avfed.video import iter_frames, probe_video

            fps = probe_video(self.video).fps or 30.0
            for frame in iter_frames(self.video):
                yield frame.rgb, frame.index / fps
            return
        import cv2

        assert self.frame_times is not None
        for path, t in zip(self.image_files, self.frame_times, strict=True):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{path}: not a readable image")
            yield np.ascontiguousarray(bgr[..., ::-1]), float(t)

    def true_bpm(self, start_s: float, end_s: float) -> float:
        inside = (self.hr_times >= start_s) & (self.hr_times <= end_s)
        if inside.any():
            return float(self.hr[inside].mean())
        return float(np.interp((start_s + end_s) / 2, self.hr_times, self.hr))


def load_ubfc(root: str | Path) -> list[Recording]:
    """Every ``<root>/<subject>/`` with ``vid.avi`` and a ground-truth file."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"UBFC-rPPG root {root} is not a folder")
    recordings = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        video = folder / "vid.avi"
        if not video.exists():
            continue
        if (folder / "ground_truth.txt").exists():
            lines = (folder / "ground_truth.txt").read_text().strip().splitlines()
            if len(lines) < 3:
                raise ValueError(f"{folder / 'ground_truth.txt'}: expected 3 lines (PPG, "
                                 f"heart rate, time), got {len(lines)}")
            hr = np.array(lines[1].split(), float)
            times = np.array(lines[2].split(), float)
        elif (folder / "gtdump.xmp").exists():
            table = np.loadtxt(folder / "gtdump.xmp", delimiter=",", ndmin=2)
            times, hr = table[:, 0] / 1000.0, table[:, 1]
        else:
            raise ValueError(f"{folder}: vid.avi without ground_truth.txt or gtdump.xmp")
        if len(hr) != len(times) or len(hr) == 0:
            raise ValueError(f"{folder}: {len(hr)} heart-rate values for {len(times)} times")
        recordings.append(Recording(folder.name, folder.name, video, [], None, times, hr))
    if not recordings:
        raise ValueError(f"no UBFC-rPPG subject folders (with vid.avi) under {root}")
    return recordings


def load_pure(root: str | Path) -> list[Recording]:
    """Every ``<root>/<NN-NN>/`` session with its JSON of pulse-oximeter and frame times."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"PURE root {root} is not a folder")
    recordings = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        candidates = [root / f"{folder.name}.json", folder / f"{folder.name}.json"]
        meta = next((c for c in candidates if c.exists()), None)
        if meta is None:
            continue
        data = json.loads(meta.read_text())
        try:
            pulse = data["/FullPackage"]
            images = data["/Image"]
            hr_ns = np.array([p["Timestamp"] for p in pulse], np.int64)
            hr = np.array([p["Value"]["pulseRate"] for p in pulse], float)
            frame_ns = np.array([i["Timestamp"] for i in images], np.int64)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{meta}: not PURE's JSON layout (missing {err})") from None
        files = [folder / f"Image{ns}.png" for ns in frame_ns]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise ValueError(f"{folder}: {len(missing)} frames listed in {meta.name} are "
                             f"missing, e.g. {missing[0]}")
        t0 = frame_ns[0]
        recordings.append(Recording(folder.name, folder.name.split("-")[0], None, files,
                                    (frame_ns - t0) / 1e9, (hr_ns - t0) / 1e9, hr))
    if not recordings:
        raise ValueError(f"no PURE sessions (NN-NN folders with their JSON) under {root}")
    return recordings
