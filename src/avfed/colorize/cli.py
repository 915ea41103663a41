"""``avfed colorize train`` and ``avfed colorize run``.

Only argparse is imported here: torch, PyAV and OpenCV load inside the handlers, so the
rest of the command line starts fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_RECIPE = "vcgan_color_clips"


def add_colorize_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``colorize train`` and ``colorize run`` under ``avfed``."""
    colorize = sub.add_parser("colorize", help="video colorization (VCGAN): train a colorizer, "
                                               "or colorize a video file")
    inner = colorize.add_subparsers(dest="colorize_command", required=True)
    train = inner.add_parser("train", help="train a colorizer from a recipe (centralised by "
                                           "default; --federated for clients with their "
                                           "own clips)")
    train.add_argument("overrides", nargs="*",
                       help=f"recipe=NAME (default {DEFAULT_RECIPE}) and dotted key=value "
                            "overrides")
    train.add_argument("--run-dir", default=None, help="write results here (default: runs/…)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue a centralised run from its last checkpoint")
    train.add_argument("--federated", action="store_true",
                       help="train on fl.num_clients simulated clients (avfed's engine)")
    train.set_defaults(func=_train)
    run = inner.add_parser("run", help="colorize a video file (grayscale or colour input)")
    run.add_argument("input", help="the video to colorize")
    run.add_argument("output", help="where to write the colorized video (.mp4)")
    run.add_argument("--checkpoint", required=True,
                     help="colorizer.safetensors of a training run (or its run folder)")
    run.add_argument("--size", type=int, default=None,
                     help="short side the model sees (default: its training size); "
                          "luminance always stays at the source resolution")
    run.add_argument("--per-frame", action="store_true",
                     help="no recurrence: colorize every frame on its own")
    run.add_argument("--flow", default="dis", choices=("dis", "farneback"))
    run.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    run.set_defaults(func=_colorize)


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from avfed.colorize.training import train_colorizer
    from avfed.config import load_config

    recipe = DEFAULT_RECIPE
    overrides = []
    for item in args.overrides:
        if item.startswith("recipe="):
            recipe = item.split("=", 1)[1]
        else:
            overrides.append(item)
    if args.resume is not None:
        if args.federated:
            raise ValueError("--resume continues a centralised run; a federated run starts over")
        config = Path(args.resume) / "config.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: no config.yaml in that folder")
        recipe = str(config)
    cfg = load_config(recipe, overrides)
    summary = train_colorizer(cfg, run_dir=args.resume or args.run_dir,
                              resume=args.resume is not None, federated=args.federated)
    console = Console(highlight=False)
    baselines = summary.get("baselines") or {}
    for name, scores in [*baselines.items(), ("colorizer", summary.get("final") or {})]:
        console.print(f"{name}: " + " · ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    colorizer = Path(summary["run_dir"]) / "colorizer.safetensors"
    if colorizer.is_file():
        console.print(f"colorizer: {colorizer}  (avfed colorize run IN.mp4 OUT.mp4 "
                      f"--checkpoint {colorizer})")
    return 0


def _colorize(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from avfed.colorize.checkpoint import load_colorizer
    from avfed.colorize.stream import colorize_video

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    console = Console(highlight=False, stderr=True)
    generator = load_colorizer(args.checkpoint)
    with Progress(TextColumn("colorizing"), BarColumn(), TextColumn("{task.completed} frames"),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        job = bar.add_task("frames", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(job, completed=done, total=total)

        result = colorize_video(args.input, args.output, generator, short_side=args.size,
                                recurrent=not args.per_frame, flow=args.flow, progress=progress)
    console.print(f"wrote {args.output}: {result.frames} frames at {result.fps:g} fps, "
                  f"{result.width}×{result.height} (colour predicted at "
                  f"{result.model_size[1]}×{result.model_size[0]}), audio "
                  f"{result.audio_seconds:.1f} s, {result.frames_per_second:.1f} frames/s")
    print(json.dumps({"frames": result.frames, "fps": result.fps,
                      "frames_per_second": round(result.frames_per_second, 3)}))
    return 0
