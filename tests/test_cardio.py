"""CardioLive: the built-in data, the rPPG methods, the streaming estimator under changing
frame rates, offset audio and bad input, the command line, the service, the dataset
readers and CardioNet's training through avfed's engine."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from avfed.cardio import pulse_av as P
from avfed.cardio import rppg
from avfed.cardio.pipeline import CardioEstimator
from avfed.cardio.timeline import AudioTimeline

# Stated tolerances: the median absolute error of the 8 s POS updates on a 160×120
# pulse_av clip with head motion, lighting drift, noise and JPEG, whatever its FPS and
# audio offset; classical methods on clean synthetic traces.
STREAM_TOLERANCE_BPM = 3.0
TRACE_TOLERANCE_BPM = 1.5


@pytest.fixture(scope="module")
def clip():
    """24 s of subject 1 at 15 → 30 → 24 FPS (jittered), no audio (added per test)."""
    spec = P.subject_table(2, seed=0)[1]
    return P.render_clip(spec, 24.0, size=(160, 120), seed=0, audio=False)


# -- built-in data -------------------------------------------------------------------------

def test_pulse_av_is_deterministic_with_a_realistic_pulse_and_changing_frame_rate():
    spec0, spec1 = P.subject_table(2, seed=3)
    a = P.render_clip(spec0, 3.0, audio=False, seed=3)
    b = P.render_clip(spec0, 3.0, audio=False, seed=3)
    c = P.render_clip(spec1, 3.0, audio=False, seed=3)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.abs(a.frames.astype(int) - c.frames[: len(a.frames)]).mean() > 5
    assert spec0.skin_tone != spec1.skin_tone and spec0.voice != spec1.voice
    # one beat: systolic peak, then a dicrotic notch (a local minimum), then the diastolic wave
    phase = np.linspace(0, 1, 1000, endpoint=False)
    wave = P.pulse_shape(phase)
    peaks = [i for i in range(1, 999) if wave[i] > wave[i - 1] and wave[i] >= wave[i + 1]]
    notches = [i for i in range(1, 999) if wave[i] < wave[i - 1] and wave[i] <= wave[i + 1]]
    assert len(peaks) == 2 and wave[peaks[0]] > wave[peaks[1]]
    assert len(notches) == 1 and peaks[0] < notches[0] < peaks[1]
    # heart-rate variability: the rate moves, within physiological bounds
    hr = P.heart_rate_curve(spec0, 60.0, seed=3)
    assert 42 <= hr.min() and hr.max() <= 170 and hr.std() > 1.0
    times = P.frame_schedule(30.0, seed=1)
    intervals = np.diff(times)
    for lo, hi, fps in ((0.5, 9.5, 15), (10.5, 19.5, 30), (20.5, 29.5, 24)):
        inside = (times[:-1] > lo) & (times[:-1] < hi)
        assert np.mean(intervals[inside]) == pytest.approx(1 / fps, rel=0.03)


# -- classical rPPG ------------------------------------------------------------------------

def _trace(bpm: float, seconds: float = 12.0, fs: float = 30.0, pulse: float = 0.01,
           seed: int = 0) -> np.ndarray:
    """Mean skin RGB of a face with a pulse, lighting flicker (a white, specular change)
    and sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    ppg = P.pulse_shape(t * bpm / 60.0)
    light = 1 + 0.02 * np.sin(2 * np.pi * 0.3 * t)
    skin = np.array([170.0, 120.0, 95.0])
    rgb = skin * (1 + pulse * ppg[:, None] * P.PULSE_SIGNATURE) * light[:, None]
    return rgb + rng.normal(0, 0.05, rgb.shape)


@pytest.mark.parametrize("bpm", [52.0, 75.0, 128.0])
def test_green_chrom_and_pos_recover_a_known_heart_rate(bpm):
    rgb = _trace(bpm)
    for method in rppg.METHODS:
        estimate = rppg.estimate_heart_rate(rgb, 30.0, method)
        assert abs(estimate.bpm - bpm) < TRACE_TOLERANCE_BPM, (method, estimate)
        assert estimate.confidence > 0.8
    assert abs(rppg.estimate_heart_rate(rgb, 30.0, "pos").bpm_peaks - bpm) < 3.0


def test_noise_without_a_pulse_has_low_confidence_and_bad_input_is_refused():
    rgb = _trace(75.0, pulse=0.0)
    for method in rppg.METHODS:
        assert rppg.estimate_heart_rate(rgb, 30.0, method).confidence < 0.3
    with pytest.raises(ValueError, match="NaN"):
        rppg.estimate_heart_rate(np.full((300, 3), np.nan), 30.0)
    with pytest.raises(ValueError, match="2 s"):
        rppg.estimate_heart_rate(rgb[:30], 30.0)
    with pytest.raises(ValueError, match="unknown rPPG method"):
        rppg.pulse_signal(rgb, 30.0, "ica")


def test_detrending_removes_a_slow_trend_and_the_band_pass_keeps_the_pulse_band():
    fs, t = 30.0, np.arange(600) / 30.0
    trend = 0.5 * t + 0.02 * t**2
    pulse = np.sin(2 * np.pi * 1.2 * t)
    cleaned = rppg.detrend(trend + pulse)
    assert np.corrcoef(cleaned, pulse)[0, 1] > 0.99
    slow, fast = np.sin(2 * np.pi * 0.1 * t), np.sin(2 * np.pi * 6.0 * t)
    out = rppg.bandpass(slow + pulse + fast, fs)
    assert np.abs(out - pulse)[60:-60].max() < 0.15


# -- the stream: FPS switches, audio offsets, bad input -------------------------------------

def _stream(estimator, clip, audio, audio_start, jitter_s=0.02, chunk=1600, seed=0):
    """Feed frames and 100 ms audio chunks in capture order; audio timestamps jittered."""
    rng = np.random.default_rng(seed)
    updates = []
    k = 0
    for frame, t in zip(clip.frames, clip.frame_times, strict=True):
        while audio is not None and k * chunk < len(audio) and \
                audio_start + k * chunk / P.AUDIO_RATE <= t:
            stamp = audio_start + k * chunk / P.AUDIO_RATE + rng.uniform(-jitter_s, jitter_s)
            assert estimator.push_audio(audio[k * chunk:(k + 1) * chunk], stamp,
                                        P.AUDIO_RATE) is None
            k += 1
        updates.extend(estimator.push_frame(frame, t))
    return updates


@pytest.mark.parametrize("offset", [-0.3, 0.3])
def test_estimate_follows_the_truth_through_fps_switches_and_audio_offsets(clip, offset):
    audio = P.speech_track(clip.subject, clip.duration_s, clip.ppg, seed=0,
                           audio_offset_s=max(offset, 0.0))
    if offset < 0:  # audio that started before the video: its first 0.3 s came earlier
        audio = np.concatenate([np.zeros(int(-offset * P.AUDIO_RATE), np.float32), audio])
    estimator = CardioEstimator(method="pos", window_s=8.0)
    updates = _stream(estimator, clip, audio, audio_start=offset)
    assert estimator.frames_refused == 0 and estimator.frames_in == len(clip.frames)
    live = [u for u in updates if u.status != "warming_up"]
    assert len(live) >= 14
    ok = [u for u in live if u.status == "ok"]
    assert len(ok) >= 0.7 * len(live)
    errors = [abs(u.bpm - clip.true_bpm(u.time_s - 8.0, u.time_s)) for u in ok]
    assert np.median(errors) <= STREAM_TOLERANCE_BPM, errors
    assert all(u.audio == "ok" for u in live)  # audio placed on the frames' clock
    assert all(u.bpm is None for u in live if u.status != "ok")


def test_audio_chunks_are_placed_by_timestamp_despite_offset_and_jitter():
    rate = 16000
    t = np.arange(6 * rate) / rate
    signal = np.sin(2 * np.pi * 3.7 * t + 2 * np.pi * 0.4 * t**2).astype(np.float32)
    rng = np.random.default_rng(0)
    for offset in (-0.3, 0.3):
        timeline = AudioTimeline(rate)
        for k in range(0, len(signal), 1600):
            timeline.add(offset + k / rate + rng.uniform(-0.015, 0.015), signal[k:k + 1600])
        window = timeline.window(offset + 2.0, offset + 4.0)
        assert window is not None
        truth = signal[2 * rate:4 * rate]
        assert np.abs(window - truth).max() < 0.1  # well under 1 ms of timing error
    # a lost stretch is marked missing, not invented: a window over it is refused
    timeline = AudioTimeline(rate)
    timeline.add(0.0, signal[:rate])
    timeline.add(1.6, signal[int(1.6 * rate):3 * rate])
    assert timeline.discontinuities == 1
    assert timeline.window(0.5, 1.7) is None
    assert timeline.window(1.7, 2.9) is not None


def test_bad_input_gets_a_clear_status_and_never_a_bpm(clip):
    estimator = CardioEstimator(window_s=4.0)
    frames, times = clip.frames, clip.frame_times
    good = estimator.push_frame(frames[0], times[0])
    assert good == []

    def refused(rgb, t):
        [update] = estimator.push_frame(rgb, t)
        assert update.bpm is None
        return update.status, update.detail

    assert refused(frames[1], times[0])[0] == "bad_timestamp"  # frozen
    status, detail = refused(frames[1], times[0] - 1.0)
    assert status == "bad_timestamp" and "backwards" in detail
    assert refused(frames[1], float("nan"))[0] == "bad_timestamp"
    status, detail = refused(np.zeros((60, 80, 3), np.uint8), times[1])
    assert status == "bad_frame" and "80×60" in detail
    assert refused(frames[1].astype(np.float32), times[1])[0] == "bad_frame"
    assert refused(frames[1][..., 0], times[1])[0] == "bad_frame"
    bad_audio = estimator.push_audio(np.array([0.1, np.nan], np.float32), 0.1, 16000)
    assert bad_audio is not None and bad_audio.status == "bad_audio"
    assert estimator.frames_refused == 6 and estimator.frames_in == 1

    # no face: a blank wall for 8 s; then a 3 s stall inside a window
    blank = np.full_like(frames[0], 128)
    stream = CardioEstimator(window_s=4.0)
    updates = [u for i in range(160) for u in stream.push_frame(blank, i / 20)]
    assert {u.status for u in updates} == {"warming_up", "no_face"}
    face = CardioEstimator(window_s=4.0)
    updates = [u for f, t in zip(frames, times, strict=True) if not 8.0 < t < 11.0
               for u in face.push_frame(f, t)]
    stalled = [u for u in updates if 11.0 < u.time_s < 15.0]
    assert stalled and all(u.status == "gap" and u.bpm is None for u in stalled)
    after = [u for u in updates if u.time_s > 15.5]  # windows past the stall are read again
    assert after and all(u.status in ("ok", "low_signal") for u in after)
    assert all(u.bpm is None for u in updates if u.status != "ok")


# -- the command line ----------------------------------------------------------------------

def test_cardio_run_writes_the_series_and_an_overlay_and_reports_broken_input(tmp_path, clip):
    from avfed.cli import main
    from avfed.video import read_frames

    with_audio = P.PulseClip(clip.subject, clip.frames[: int(len(clip.frames) * 0.6)],
                             clip.frame_times[: int(len(clip.frames) * 0.6)],
                             P.speech_track(clip.subject, clip.duration_s, clip.ppg, 0), 0.0,
                             clip.hr, clip.ppg)
    video = P.write_clip(with_audio, tmp_path / "clip.mp4")
    out, overlay = tmp_path / "bpm.csv", tmp_path / "overlay.mp4"
    assert main(["cardio", "run", str(video), "--out", str(out), "--overlay", str(overlay),
                 "--window", "6", "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["time_s", "bpm", "confidence", "method", "status", "detail",
                             "bpm_peaks", "audio"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(rows) >= 12 and len(ok) >= 5
    errors = [abs(float(r["bpm"]) - clip.true_bpm(float(r["time_s"]) - 6, float(r["time_s"])))
              for r in ok]
    assert np.median(errors) < 4.0 and all(r["audio"] == "ok" for r in ok)
    frames, times = read_frames(overlay)
    assert len(frames) == len(with_audio.frames)
    np.testing.assert_allclose(times, np.round(with_audio.frame_times, 3), atol=2e-3)
    # a truncated file and a missing one: exit status 1 and a status row, never a BPM
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    assert main(["cardio", "run", str(truncated), "--out", str(out), "--quiet"]) == 1
    last = list(csv.DictReader(out.open()))[-1]
    assert last["status"] == "input_error" and last["bpm"] == "" and str(truncated) in \
        last["detail"]  # the message names the file
    assert main(["cardio", "run", str(tmp_path / "nope.mp4"), "--out", str(out),
                 "--quiet"]) == 1
    # corrupt packets in the middle: the frames they held are lost, and the windows that
    # span the hole say so instead of reading a heart rate through it
    webm = P.write_clip(with_audio, tmp_path / "clip.webm")
    data = bytearray(webm.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 12000] = np.random.default_rng(0).integers(0, 256, 12000,
                                                                    np.uint8).tobytes()
    webm.write_bytes(bytes(data))
    assert main(["cardio", "run", str(webm), "--out", str(out), "--window", "6",
                 "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert any(r["status"] == "gap" for r in rows)
    assert all(r["bpm"] == "" for r in rows if r["status"] != "ok")


# -- the service ---------------------------------------------------------------------------

def test_service_keeps_sessions_apart_refuses_bad_messages_and_frees_closed_sessions(clip):
    from fastapi.testclient import TestClient

    from avfed.cardio.service import ServiceConfig, create_app, pack_message

    app = create_app(ServiceConfig(window_s=4.0, max_message_bytes=100_000))
    registry = app.state.sessions

    def jpeg(rgb):
        return cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    with TestClient(app) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
            assert a.receive_json()["type"] == "hello" and b.receive_json()["type"] == "hello"
            assert len(registry.sessions) == 2
            for frame, t in zip(clip.frames[:150], clip.frame_times[:150], strict=True):
                a.send_bytes(pack_message({"type": "frame", "t": float(t)}, jpeg(frame)))
            # b streams other frames (another size) at other times: no interference
            small = np.ascontiguousarray(clip.frames[0][:96, :128])
            b.send_bytes(pack_message({"type": "frame", "t": 0.5, "format": "rgb",
                                       "width": 128, "height": 96}, small.tobytes()))
            b.send_bytes(b"\x00" * 200_000)
            b.send_bytes(b"\x07\x00")
            b.send_bytes(pack_message({"type": "frame", "t": 1.0}, b"not an image"))
            b.send_bytes(pack_message({"type": "audio", "t": 1.0, "rate": 16000}, b"abc"))
            b.send_text("hello?")
            replies = [b.receive_json() for _ in range(5)]
            assert [r["status"] for r in replies] == ["too_large", "bad_message", "bad_message",
                                                      "bad_message", "bad_message"]
            assert "over the 100000-byte limit" in replies[0]["detail"]
            a.send_text("flush")
            updates = []
            while True:
                reply = a.receive_json()
                if reply["type"] == "refused":
                    break
                updates.append(reply)
            last = int(clip.frame_times[149] - clip.frame_times[0])
            assert [u["time_s"] for u in updates] == [float(s) for s in range(1, last + 1)]
            assert {u["status"] for u in updates[:3]} == {"warming_up"}
            assert all(u["bpm"] is None for u in updates if u["status"] != "ok")
        assert client.get("/health").json()["sessions"] == 0
    assert registry.opened == 2 and registry.closed == 2


# -- recorded corpora ----------------------------------------------------------------------

def test_ubfc_and_pure_readers_on_small_generated_trees(tmp_path):
    from avfed.cardio.datasets import load_pure, load_ubfc
    from avfed.video import write_video

    frames = np.random.default_rng(0).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8)
    ubfc = tmp_path / "ubfc"
    for name, kind in (("subject1", "dataset2"), ("subject3", "dataset1")):
        folder = ubfc / name
        folder.mkdir(parents=True)
        write_video(folder / "vid.avi", frames, fps=30)
        if kind == "dataset2":
            (folder / "ground_truth.txt").write_text("0.1 0.2 0.3\n70 72 74\n0.0 1.0 2.0\n")
        else:
            (folder / "gtdump.xmp").write_text("0,80,98,0.1\n1000,82,98,0.2\n2000,84,98,0.1\n")
    recordings = load_ubfc(ubfc)
    assert [r.name for r in recordings] == ["subject1", "subject3"]
    assert recordings[0].true_bpm(0.0, 2.0) == pytest.approx(72.0)
    assert recordings[1].true_bpm(0.5, 2.0) == pytest.approx(83.0)
    assert len(list(recordings[0].frames())) == 6
    (ubfc / "subject4").mkdir()
    write_video(ubfc / "subject4" / "vid.avi", frames, fps=30)
    with pytest.raises(ValueError, match="subject4"):
        load_ubfc(ubfc)

    pure = tmp_path / "pure"
    session = pure / "01-01"
    session.mkdir(parents=True)
    stamps = [10_000_000_000 + i * 33_333_333 for i in range(4)]
    for ns, frame in zip(stamps, frames, strict=False):
        cv2.imwrite(str(session / f"Image{ns}.png"), frame)
    meta = {"/FullPackage": [{"Timestamp": 10_000_000_000 + i * 16_666_667,
                              "Value": {"pulseRate": 60 + i, "waveform": 0}} for i in range(8)],
            "/Image": [{"Timestamp": ns} for ns in stamps]}
    (pure / "01-01.json").write_text(json.dumps(meta))
    [recording] = load_pure(pure)
    assert recording.subject == "01"
    got = list(recording.frames())
    assert len(got) == 4 and got[1][1] == pytest.approx(0.0333, abs=1e-3)
    np.testing.assert_array_equal(got[0][0], frames[0][..., ::-1])
    (session / f"Image{stamps[2]}.png").unlink()
    with pytest.raises(ValueError, match="missing"):
        load_pure(pure)


# -- CardioNet -----------------------------------------------------------------------------

def _synthetic_windows(n: int, seed: int = 0, frames: int = 96, size: int = 12):
    """Crops whose colour pulses at a random heart rate, and speech-like noise whose
    loudness follows the same pulse."""
    rng = np.random.default_rng(seed)
    bpm = rng.uniform(55, 120, n)
    t = np.arange(frames) / 16.0
    pulse = P.pulse_shape(t[None, :] * bpm[:, None] / 60.0)
    base = rng.uniform(90, 180, (n, 1, size, size, 3))
    crops = base * (1 + 0.01 * pulse[:, :, None, None, None] * P.PULSE_SIGNATURE)
    crops = crops + rng.normal(0, 0.5, crops.shape)
    ta = np.arange(frames * 1000 // 16) / 1000.0
    envelope = 1 + 0.3 * P.pulse_shape(ta[None, :] * bpm[:, None] / 60.0)
    audio = rng.normal(0, 0.1, (n, len(ta))) * envelope
    video = torch.tensor(crops, dtype=torch.float32).permute(0, 1, 4, 2, 3)
    return torch.tensor(bpm, dtype=torch.float32), video, torch.tensor(audio, dtype=torch.float32)


def test_cardionet_and_its_ablations_learn_a_heart_rate():
    bpm, video, audio = _synthetic_windows(24, frames=64)  # 4 s windows: a cheaper test
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a second thread only waits (and spins when loaded)
    try:
        _learn_each_branch(bpm, video, audio)
    finally:
        torch.set_num_threads(threads)


def _learn_each_branch(bpm, video, audio):
    from avfed.cardio.cardionet import CardioNet, cardionet_loss

    for branches in ("av", "video", "audio"):
        torch.manual_seed(0)
        model = CardioNet(branches, window_s=4.0)
        logits = model(video, audio)
        assert logits.shape == (24, len(model.bpm_bins))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        before = (model.bpm(logits) - bpm).abs().mean().item()
        first = cardionet_loss(model, logits, bpm).item()
        for _ in range(12):
            loss = cardionet_loss(model, model(video, audio), bpm)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after = (model.bpm(model(video, audio)) - bpm).abs().mean().item()
        assert loss.item() < 0.9 * first and after < 0.7 * before, (branches, before, after)


def test_cardionet_trains_through_the_engine_with_subjects_as_clients(tmp_path):
    from avfed.build import build_run
    from avfed.cardio.task import load_model_spec
    from avfed.cli import main
    from avfed.config import load_config

    small = ["data.num_speakers=3", "data.test_fraction=0.34", "fl.num_clients=2",
             "train.local_epochs=1", "fl.rounds=1"]
    built = build_run(load_config("cardio_pulse_av", small), with_strategy=False)
    train, test = built.splits["image"]
    assert set(test.groups) == {2} and set(train.groups) == {0, 1}
    for client in range(2):  # one subject per client
        assert len(set(train.groups[built.partitions()[client]["image"]])) == 1
    run_dir = tmp_path / "run"
    assert main(["cardio", "train", *small, "--central", "--run-dir", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["task"] == "cardionet"
    assert {"neg_mae_bpm", "neg_rmse_bpm", "pearson_r"} <= set(summary["final"])
    assert "POS on the crops" in summary["baselines"]
    predictions = np.loadtxt(run_dir / "predictions.csv", delimiter=",", skiprows=1)
    assert predictions.shape == (len(test), 2)
    spec = load_model_spec(run_dir)
    frames, samples = int(spec.window_s * spec.crop_rate), int(spec.window_s * spec.audio_rate)
    crops = np.full((frames, spec.crop_size, spec.crop_size, 3), 120.0)
    bpm = spec.predictor(crops, np.zeros(samples, np.float32))
    assert 40 <= bpm <= 185
