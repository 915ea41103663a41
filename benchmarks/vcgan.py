"""VCGAN vs a per-frame colorizer vs the grayscale input on held-out color_clips, and the
speed and memory of ``avfed colorize run``.

Quality: the same recipe (``vcgan_color_clips``) trained twice with the same budget and
seed — once as VCGAN (recurrent, temporal losses), once with ``task.args.recurrent=false``
(every frame colorized on its own, no temporal terms: the per-frame colorizer) — then
both scored on the held-out clips (photographs and digit scans never trained on): PSNR,
SSIM, colorfulness, warp error and CDC. The grayscale input is the floor (no colour,
perfectly stable). Example frames go to docs/images/vcgan_examples.png.

Streaming: frames per second of the colorize command on a generated 256×448 video with
audio, and the peak memory (max RSS of a fresh process) colorizing a short and a long
generated video: it must not grow with the length.

    python benchmarks/vcgan.py                 # full run, appends to BENCHMARKS.md
    python benchmarks/vcgan.py --quick --no-publish
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, publish  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "docs" / "images" / "vcgan_examples.png"
KEYS = ("psnr", "ssim", "colorfulness", "warp_error", "cdc")


def train_system(overrides: list[str], rounds: int, label: str):  # noqa: ANN201
    from avfed.build import build_run
    from avfed.config import load_config
    from avfed.seeding import derive_seed, seed_everything
    from avfed.tasks import TrainContext

    cfg = load_config("vcgan_color_clips", overrides + [f"fl.rounds={rounds}"])
    built = build_run(cfg, with_strategy=False)
    seed_everything(cfg.seed)
    data = built.pooled_data()
    started = time.perf_counter()
    for rnd in range(1, rounds + 1):
        out = built.task.train(data, TrainContext(derive_seed(cfg.seed, rnd, 0), rnd))
        parts = json.dumps({k: round(v, 4) for k, v in out.metrics.items()})
        print(f"  {label} round {rnd}/{rounds}: loss {out.loss:.3f} ({out.seconds:.0f} s) "
              f"{parts}", flush=True)
    return built.task, time.perf_counter() - started


def per_clip(task, clips: torch.Tensor, outputs: torch.Tensor) -> list[dict[str, float]]:  # noqa: ANN001
    from avfed.colorize.color import luminance
    from avfed.colorize.metrics import video_scores

    return [video_scores(o, c, luminance(c), task.flow) for o, c in zip(outputs, clips,
                                                                          strict=True)]


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in KEYS}


def draw_examples(clips: torch.Tensor, rows: dict[str, torch.Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = min(2, len(clips))
    frames = clips.shape[1]
    names = list(rows)
    fig, axes = plt.subplots(shown * len(names), frames,
                             figsize=(1.3 * frames, 1.35 * shown * len(names)))
    for c in range(shown):
        for r, name in enumerate(names):
            for t in range(frames):
                ax = axes[c * len(names) + r, t]
                ax.imshow(rows[name][c, t].permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if t == 0:
                    ax.set_ylabel(name, fontsize=7)
                if c == 0 and r == 0:
                    ax.set_title(f"t={t}", fontsize=7)
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_video(path: Path, seconds: float, height: int, width: int, fps: float = 24.0) -> None:
    """A slow pan and zoom over a held-out photograph, with a tone on the audio track."""
    from avfed.colorize.color_clips import TEST_PHOTOS, _photos, _view
    from avfed.video import VideoWriter

    photo = _photos(TEST_PHOTOS)[0]
    h, w = photo.shape[:2]
    count = int(round(seconds * fps))
    rate = 16000
    with VideoWriter(path, fps, width, height, audio_rate=rate) as writer:
        for i in range(count):
            u = 0.5 + 0.4 * np.sin(2 * np.pi * i / (fps * 8))
            side = 0.5 * min(h, w) * (1.0 + 0.2 * np.cos(2 * np.pi * i / (fps * 11)))
            square = _view(photo, w * (0.3 + 0.4 * u), h * 0.5, side, 0.0, width)
            top = (width - height) // 2
            writer.write(np.ascontiguousarray(square[top:top + height]))
            t = np.arange(int(rate * i / fps), int(rate * (i + 1) / fps)) / rate
            writer.write_audio((0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None])


CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
from avfed.colorize.checkpoint import load_colorizer
from avfed.colorize.stream import colorize_video
g = load_colorizer(sys.argv[3])
r = colorize_video(sys.argv[1], sys.argv[2], g)
print(json.dumps({"frames": r.frames, "seconds": r.seconds, "fps_out": r.fps,
                  "frames_per_second": r.frames_per_second,
                  "model_size": list(r.model_size), "audio_seconds": r.audio_seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def colorize_in_child(src: Path, dst: Path, colorizer: Path, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), str(colorizer),
                          str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_stream(args: argparse.Namespace, task) -> tuple[str, float]:  # noqa: ANN001
    """Throughput at 256×448 and peak memory on a short and a long video; the table and
    the long/short peak-memory ratio."""
    from avfed.colorize.checkpoint import save_colorizer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        colorizer = save_colorizer(task.model.generator, folder / "c.safetensors")
        speed_src = folder / "speed.mp4"
        make_video(speed_src, args.short_seconds, 256, 448)
        speeds = {int(n): colorize_in_child(speed_src, folder / "speed_out.mp4", colorizer,
                                            int(n)) for n in args.speed_threads.split(",")}
        mh, mw = (int(x) for x in args.memory_size.split("x"))
        memory = {}
        for name, secs in (("short", args.short_seconds), ("long", args.long_seconds)):
            src = folder / f"{name}.mp4"
            make_video(src, secs, mh, mw)
            memory[name] = colorize_in_child(src, folder / f"{name}_out.mp4", colorizer,
                                             args.threads)
            memory[name]["video_s"] = secs
    stream = markdown_table(
        ["colorize run", "frames", "source", "model input", "frames/s", "peak RSS (MB)"],
        [[f"throughput, {n} thread{'s' if n > 1 else ''}", speed["frames"], "256×448",
          "×".join(map(str, speed["model_size"])), f"{speed['frames_per_second']:.1f}",
          f"{speed['peak_rss_mb']:.0f}"] for n, speed in speeds.items()]
        + [[f"{name} ({m['video_s']:.0f} s)", m["frames"], f"{mh}×{mw}",
            "×".join(map(str, m["model_size"])), f"{m['frames_per_second']:.1f}",
            f"{m['peak_rss_mb']:.0f}"] for name, m in memory.items()])
    ratio = memory["long"]["peak_rss_mb"] / memory["short"]["peak_rss_mb"]
    return stream, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--image-rounds", type=int, default=4)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=15, help="batches per round")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training and the memory runs")
    parser.add_argument("--speed-threads", default="1,2",
                        help="torch threads to measure colorize throughput with")
    parser.add_argument("--short-seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--memory-size", default="128x224", help="HxW of the memory videos")
    parser.add_argument("--quick", action="store_true", help="2 rounds, short videos (smoke)")
    parser.add_argument("--skip-stream", action="store_true",
                        help="quality only: no throughput and memory measurement")
    parser.add_argument("--gan-loss", default=None, help="override task.args.gan_loss")
    parser.add_argument("--no-publish", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.image_rounds, args.steps = 2, 1, 2
        args.short_seconds, args.long_seconds = 1.0, 3.0
    torch.set_num_threads(args.threads)
    common = [f"data.image_size={args.size}", f"task.args.image_rounds={args.image_rounds}",
              f"task.args.steps_per_round={args.steps}", f"train.batch_size={args.batch}"]
    if args.gan_loss:
        common.append(f"task.args.gan_loss={args.gan_loss}")
    systems = {"per-frame (image mode)": ["task.args.recurrent=false"],
               "VCGAN (recurrent)": ["task.args.recurrent=true"]}
    tasks, seconds = {}, {}
    for label, extra in systems.items():
        print(f"training {label} …", flush=True)
        tasks[label], seconds[label] = train_system(common + extra, args.rounds, label)
    first = next(iter(tasks.values()))
    from avfed.colorize.color import luminance
    from avfed.colorize.color_clips import unpack_clips

    clips = unpack_clips(first.test.images[: first.eval_clips])
    outputs = {"grayscale input": luminance(clips).expand(-1, -1, 3, -1, -1)}
    for label, task in tasks.items():
        outputs[label] = torch.cat([task.colorize(clips[i:i + 8])
                                    for i in range(0, len(clips), 8)])
    outputs["ground truth"] = clips
    scores = {label: per_clip(first, clips, out) for label, out in outputs.items()}
    rows = []
    for label, per in scores.items():
        m = mean(per)
        psnr = "∞" if label == "ground truth" else f"{m['psnr']:.2f}"
        rows.append([label, psnr, f"{m['ssim']:.3f}", f"{m['colorfulness']:.1f}",
                     f"{m['warp_error'] * 1e3:.3f}", f"{m['cdc']:.4f}",
                     f"{seconds.get(label, 0.0):.0f}"])
    frame_label, vcgan_label = list(systems)
    wins = np.mean([v["warp_error"] < p["warp_error"] for v, p in
                    zip(scores[vcgan_label], scores[frame_label], strict=True)])
    quality = markdown_table(["system", "PSNR (dB) ↑", "SSIM ↑", "colorfulness ↑",
                              "warp error ×10⁻³ ↓", "CDC ↓", "train s"], rows)
    draw_examples(clips, {"gray": outputs["grayscale input"],
                          "per-frame": outputs[frame_label], "VCGAN": outputs[vcgan_label],
                          "truth": clips}, IMAGE)
    stream, ratio = measure_stream(args, tasks[vcgan_label]) if not args.skip_stream else (
        "", float("nan"))
    fm, vm = mean(scores[frame_label]), mean(scores[vcgan_label])
    note = (f"Held-out color_clips ({len(clips)} clips × {clips.shape[1]} frames, "
            f"{args.size}×{args.size}; photographs and digit scans never trained on). Both "
            f"colorizers: the vcgan_color_clips recipe, {args.rounds} rounds of {args.steps} "
            f"batches of {args.batch} clips, critic loss {args.gan_loss or 'of the recipe'} "
            f"({args.image_rounds} image-stage rounds, then video stage), same seed and budget; "
            f"{args.threads} torch threads on a shared, heavily loaded machine (timings are "
            f"indicative only). VCGAN's warp error is {vm['warp_error'] / fm['warp_error']:.2f}× "
            f"the per-frame colorizer's (lower on {wins:.0%} of clips) at a PSNR "
            f"{vm['psnr'] - fm['psnr']:+.2f} dB from it; the grayscale input is the floor for "
            f"colour and the ceiling for stability; the ground truth's own warp error and CDC "
            f"(real motion and occlusions) are what a perfect colorization would score.")
    if not args.skip_stream:
        note += (f" Streaming: `avfed colorize run` on generated videos with audio (24 fps), "
                 f"peak RSS of a fresh process; long/short peak memory ratio {ratio:.3f}.")
    publish("VCGAN video colorization (color_clips) and `avfed colorize run`",
            quality + ("\n\n" + stream if stream else ""), note, append=not args.no_publish)
    print(f"examples: {IMAGE}")


if __name__ == "__main__":
    main()
