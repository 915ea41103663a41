"""``avfed cardio run | serve | train``.

Nothing heavy is imported at module level (the ``avfed`` command must start fast);
each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

FIELDS = ("time_s", "bpm", "confidence", "method", "status", "detail", "bpm_peaks", "audio")


def add_cardio_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``avfed cardio ...`` on the top-level sub-parsers."""
    cardio = sub.add_parser("cardio", help="CardioLive: heart rate from face video and audio")
    commands = cardio.add_subparsers(dest="cardio_command", required=True)

    run = commands.add_parser("run", help="estimate heart rate from a video file, a webcam "
                              "index or a stream URL; 'pulse_av' plays a built-in demo clip")
    run.add_argument("input", help="video file, webcam index (0 = /dev/video0), stream URL, "
                     "or pulse_av")
    _estimator_arguments(run)
    run.add_argument("--out", default="cardio_bpm.csv",
                     help="BPM series to write as it goes: .csv or .jsonl (default %(default)s)")
    run.add_argument("--overlay", default=None, metavar="OUT.mp4",
                     help="also write the video with the face box and live BPM drawn on it")
    run.add_argument("--max-seconds", type=float, default=None,
                     help="stop after this much stream time (webcams and live streams)")
    run.add_argument("--quiet", action="store_true", help="do not print each update")
    run.set_defaults(func=_run_stream)

    serve = commands.add_parser("serve", help="the WebSocket service and its browser page")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default loopback only: %(default)s)")
    serve.add_argument("--port", type=int, default=8765)
    _estimator_arguments(serve)
    serve.add_argument("--max-sessions", type=int, default=16)
    serve.add_argument("--max-message-bytes", type=int, default=2_000_000)
    serve.add_argument("--demo", action="store_true", help="also serve a pulse_av clip: open "
                       "/?src=/media/pulse_av.webm to watch the page estimate its heart rate")
    serve.set_defaults(func=_serve)

    train = commands.add_parser("train", help="train CardioNet with avfed's engine "
                                "(federated, clients = subjects; --central for the pooled run)")
    train.add_argument("overrides", nargs="*",
                       help="recipe=NAME (default cardio_pulse_av) and dotted overrides")
    train.add_argument("--central", action="store_true", help="train on the pooled subjects")
    train.add_argument("--run-dir", default=None)
    train.add_argument("--verbose", action="store_true")
    # `avfed cardio train` is `avfed run` with the cardio recipe by default: take the run
    # command's handler from its parser rather than importing the top-level CLI
    run_command = sub.choices["run"].get_default("func") if "run" in sub.choices else None
    train.set_defaults(func=lambda args: _train(args, run_command))


def _estimator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="pos", choices=["green", "chrom", "pos"],
                        help="classical rPPG method (default %(default)s; with --model, the "
                        "fallback when a window has no audio)")
    parser.add_argument("--model", default=None, metavar="RUN_DIR",
                        help="a CardioNet run folder (avfed cardio train) to read out instead")
    parser.add_argument("--window", type=float, default=8.0, help="seconds per estimate")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between updates")
    parser.add_argument("--detect-every", type=int, default=10,
                        help="run the face detector every N frames, track in between")


def make_estimator(args: argparse.Namespace):
    """A :class:`~avfed.cardio.pipeline.CardioEstimator` from the command-line options."""
    from avfed.cardio.pipeline import CardioEstimator

    model = None
    if getattr(args, "model", None):
        from avfed.cardio.task import load_model_spec

        model = load_model_spec(args.model)
    return CardioEstimator(method=args.method, window_s=args.window,
                           update_every_s=args.every, detect_every=args.detect_every,
                           model=model)


class SeriesWriter:
    """Writes updates to CSV or JSON lines as they come (flushed per row)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.path.suffix in (".jsonl", ".json")
        self._fh = self.path.open("w", newline="")
        self._csv = None if self.jsonl else csv.DictWriter(self._fh, FIELDS)
        if self._csv is not None:
            self._csv.writeheader()

    def write(self, row: dict) -> None:
        if self._csv is not None:
            self._csv.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in FIELDS})
        else:
            self._fh.write(json.dumps({k: row.get(k) for k in FIELDS}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _describe(row: dict) -> str:
    bpm = f"{row['bpm']:6.1f} BPM" if row["bpm"] is not None else "     — BPM"
    conf = f"conf {row['confidence']:.2f}" if row["confidence"] is not None else ""
    return (f"{row['time_s']:8.2f} s  {bpm}  {conf}  {row['method']}  {row['status']}"
            f"{'  ' + row['detail'] if row['status'] != 'ok' else ''}")


def _source(text: str):
    if text == "pulse_av":
        from avfed.cardio.pulse_av import demo_clip

        return str(demo_clip())
    return int(text) if text.isdigit() else text


def run_stream(args: argparse.Namespace) -> int:
    """Decode the input, feed the estimator, write the series (and the overlay)."""
    from avfed.cardio.overlay import OverlayWriter
    from avfed.video import AudioChunk, VideoReadError, iter_media

    source = _source(args.input)
    estimator = make_estimator(args)
    series = SeriesWriter(args.out)
    overlay = OverlayWriter(args.overlay) if args.overlay else None
    latest = None
    status = 0
    try:
        for item in iter_media(source, audio_rate=estimator.audio_rate):
            if isinstance(item, AudioChunk):
                refused = estimator.push_audio(item.samples, item.time_s, item.rate)
                updates = [refused] if refused is not None else []
            else:
                if args.max_seconds is not None and estimator.first_time is not None and \
                        item.time_s - estimator.first_time > args.max_seconds:
                    break
                updates = estimator.push_frame(item.rgb, item.time_s)
                if overlay is not None:
                    overlay.write(item.rgb, estimator.tracker.box, latest, item.time_s)
            for update in updates:
                row = update.as_dict()
                if update.status not in ("bad_frame", "bad_timestamp", "bad_audio"):
                    latest = row
                series.write(row)
                if not args.quiet:
                    print(_describe(row), flush=True)
    except VideoReadError as err:
        row = {"time_s": estimator.last_time, "bpm": None, "confidence": 0.0,
               "method": estimator.method, "status": "input_error", "detail": str(err)}
        series.write(row)
        print(f"error: {err}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        series.close()
        if overlay is not None:
            overlay.close()
    print(f"{estimator.frames_in} frames, {estimator.frames_refused} refused; "
          f"series: {series.path}" + (f"; overlay: {args.overlay}" if overlay else ""))
    return status


def _run_stream(args: argparse.Namespace) -> int:
    return run_stream(args)


def _serve(args: argparse.Namespace) -> int:
    from avfed.cardio.service import serve

    serve(args)
    return 0


def _train(args: argparse.Namespace, run_command) -> int:
    if run_command is None:
        raise RuntimeError("avfed cardio train needs the `avfed run` command registered first")
    items = list(args.overrides)
    if not any(item.startswith(("recipe=", "resume=")) for item in items):
        items.insert(0, "recipe=cardio_pulse_av")
    return run_command(argparse.Namespace(overrides=items, central=args.central,
                                          run_dir=args.run_dir, verbose=args.verbose))
