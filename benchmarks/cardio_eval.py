"""Heart-rate accuracy on held-out pulse_av subjects: GREEN, CHROM, POS and CardioNet
(audio-visual, video-only, audio-only; central, and federated with one client per subject).

Every method is scored on the same 6 s windows (1 s stride) of the same held-out
subjects against the window's mean true heart rate: MAE, RMSE (BPM) and Pearson r.
The classical methods run the live path (face tracker, skin mean colour, 30 Hz uniform
timeline); CardioNet is trained with avfed's engine (``cardio_pulse_av`` recipe) and
reads the same windows' face crops and audio. Trivial baselines beside them: the
training subjects' mean heart rate, and POS on the crops' mean colour.

    python benchmarks/cardio_eval.py --subjects 10 --held-out 2 --rounds 8
    python benchmarks/cardio_eval.py --ubfc /data/UBFC-rPPG/DATASET_2   # your own copy
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import markdown_table, publish

PAPER = "CardioLive reports MAE 1.79 BPM for CardioNet on its own (real) data, 69.2 % lower " \
        "than video-only and 81.2 % lower than audio-only"


def classical_scores(subjects: int, held_out: int, seed: int) -> dict[str, dict[str, float]]:
    """GREEN / CHROM / POS on the held-out clips through the live face/skin path."""
    from avfed.cardio import rppg
    from avfed.cardio.face import FaceTracker
    from avfed.cardio.pulse_av import render_clip, subject_table
    from avfed.cardio.task import PULSE_AV_SECONDS, regression_scores
    from avfed.cardio.timeline import SampleTimeline

    predictions: dict[str, list[float]] = {m: [] for m in rppg.METHODS}
    truth: list[float] = []
    for spec in subject_table(subjects, seed)[subjects - held_out:]:
        clip = render_clip(spec, PULSE_AV_SECONDS, size=(160, 120), seed=seed, audio=False)
        tracker, colour = FaceTracker(), SampleTimeline(horizon_s=1e9)
        for frame, t in zip(clip.frames, clip.frame_times, strict=True):
            face = tracker.update(frame)
            if face is not None:
                colour.add(t, face.mean_rgb)
        start = float(clip.frame_times[0])
        while start + 6.0 <= clip.frame_times[-1] + 1e-9:
            window = colour.window(start, start + 6.0, 30.0)
            if window is not None:
                truth.append(clip.true_bpm(start, start + 6.0))
                for method in rppg.METHODS:
                    predictions[method].append(
                        rppg.estimate_heart_rate(window[1], 30.0, method).bpm)
            start += 1.0
    return {m.upper(): regression_scores(np.array(p), np.array(truth))
            for m, p in predictions.items()}


def recorded_scores(recordings, window_s: float = 6.0) -> dict[str, dict[str, float]]:
    """GREEN / CHROM / POS on a recorded corpus (UBFC-rPPG or PURE readers), through the
    same live face/skin path, against the reference heart rate of each window."""
    from avfed.cardio import rppg
    from avfed.cardio.face import FaceTracker
    from avfed.cardio.task import regression_scores
    from avfed.cardio.timeline import SampleTimeline

    predictions: dict[str, list[float]] = {m: [] for m in rppg.METHODS}
    truth: list[float] = []
    for recording in recordings:
        tracker, colour = FaceTracker(), SampleTimeline(horizon_s=1e9)
        first = last = None
        for frame, t in recording.frames():
            first = t if first is None else first
            last = t
            face = tracker.update(frame)
            if face is not None:
                colour.add(t, face.mean_rgb)
        start = first if first is not None else 0.0
        while last is not None and start + window_s <= last + 1e-9:
            window = colour.window(start, start + window_s, 30.0)
            if window is not None:
                truth.append(recording.true_bpm(start, start + window_s))
                for method in rppg.METHODS:
                    predictions[method].append(
                        rppg.estimate_heart_rate(window[1], 30.0, method).bpm)
            start += 1.0
    if not truth:
        raise ValueError("no window with a face in the recordings")
    return {m.upper(): regression_scores(np.array(p), np.array(truth))
            for m, p in predictions.items()}


def cardionet_run(overrides: list[str], folder: Path, federated: bool) -> dict:
    from avfed.build import build_run
    from avfed.central import run_central
    from avfed.config import load_config
    from avfed.runs import RunDir

    cfg = load_config("cardio_pulse_av", overrides)
    built = build_run(cfg, with_strategy=federated)
    run = RunDir.create(cfg, folder)
    started = time.perf_counter()
    if federated:
        from avfed.fl.simulation import run_federated

        summary = run_federated(built, run)
    else:
        summary = run_central(built, run)
    summary["seconds"] = time.perf_counter() - started
    return summary


def row(name: str, scores: dict[str, float], note: str = "") -> list[object]:
    return [name, f"{-scores['neg_mae_bpm']:.2f}", f"{-scores['neg_rmse_bpm']:.2f}",
            f"{scores['pearson_r']:.3f}", note]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-federated", action="store_true")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--ubfc", default=None, metavar="ROOT",
                        help="instead: the classical methods on your UBFC-rPPG copy")
    parser.add_argument("--pure", default=None, metavar="ROOT",
                        help="instead: the classical methods on your PURE copy")
    args = parser.parse_args()
    if args.ubfc or args.pure:
        from avfed.cardio.datasets import load_pure, load_ubfc

        name = "UBFC-rPPG" if args.ubfc else "PURE"
        recordings = load_ubfc(args.ubfc) if args.ubfc else load_pure(args.pure)
        scores = recorded_scores(recordings)
        table = markdown_table(["method", "MAE (BPM)", "RMSE (BPM)", "Pearson r", "notes"],
                               [row(m, v, "6 s windows, 1 s stride") for m, v in scores.items()])
        publish(f"CardioLive classical rPPG on {name}", table,
                f"{len(recordings)} recordings; published MAE (rPPG-Toolbox) on UBFC-rPPG / "
                "PURE: GREEN 19.81 / 10.09, CHROM 3.98 / 5.77, POS 4.00 / 3.67.",
                append=not args.no_append)
        return
    fraction = args.held_out / args.subjects
    base = [f"data.num_speakers={args.subjects}", f"data.test_fraction={fraction}",
            f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}", f"seed={args.seed}",
            f"fl.num_clients={args.subjects - args.held_out}"]
    rows = []
    classical = classical_scores(args.subjects, args.held_out, args.seed)
    for name, scores in classical.items():
        rows.append(row(name, scores, "live path: tracker, skin mean, 30 Hz"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("CardioNet AV (central)", ["task.args.branches=av"], False),
                    ("CardioNet video-only (central)", ["task.args.branches=video"], False),
                    ("CardioNet audio-only (central)", ["task.args.branches=audio"], False)]
        if not args.no_federated:
            variants.append(("CardioNet AV (federated, 1 subject per client)",
                             ["task.args.branches=av", "fl.sim_cpus=2", "fl.timeout_s=1800"],
                             True))
        baselines = None
        for name, extra, federated in variants:
            summary = cardionet_run(base + extra, Path(tmp) / name.split()[1], federated)
            results[name] = summary
            baselines = baselines or summary["baselines"]
            rows.append(row(name, summary["final"], f"{args.rounds} rounds, "
                            f"{summary['seconds']:.0f} s"))
            print(json.dumps({name: summary["final"]}), flush=True)
        for name, scores in (baselines or {}).items():
            rows.append(row(f"baseline: {name}", scores, "same windows as CardioNet"))
    table = markdown_table(["method", "MAE (BPM)", "RMSE (BPM)", "Pearson r", "notes"], rows)
    av = -results["CardioNet AV (central)"]["final"]["neg_mae_bpm"]
    video = -results["CardioNet video-only (central)"]["final"]["neg_mae_bpm"]
    audio = -results["CardioNet audio-only (central)"]["final"]["neg_mae_bpm"]
    trivial = (baselines or {}).get("training mean BPM", {}).get("neg_mae_bpm", float("nan"))
    note = (f"{args.subjects} pulse_av subjects (variations of one photographed face: skin "
            f"tone, framing, mirroring; different voices), the last {args.held_out} held out; "
            f"6 s windows at a 1 s stride; one seed. Audio-visual vs video-only MAE: {av:.2f} "
            f"vs {video:.2f} BPM: adding audio changes the MAE by "
            f"{100 * (av - video) / video:+.0f} % (one seed and two held-out subjects: a "
            f"difference this size is within what another seed could change); audio-only "
            f"{audio:.2f} BPM against {-trivial:.2f} for predicting the training mean. "
            f"{PAPER}; these synthetic numbers are not comparable "
            "to the paper's, and the audio here carries the pulse only because pulse_av "
            "puts it there (a 20 % loudness modulation). Machine shared with other jobs.")
    publish("CardioLive heart-rate accuracy on held-out pulse_av subjects", table, note,
            append=not args.no_append)


if __name__ == "__main__":
    main()
