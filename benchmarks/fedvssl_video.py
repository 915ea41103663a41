"""FedVSSL's Table-4 grid on the built-in moving_digits clips, and the video data path's cost.

Grid: the aggregation rules of the paper's Table 4 — FedAvg (α=0, β=0), loss-weighted
(1, 0), SWA (0, 1), (1, 1), (0.9, 0), (0.9, 1) — with partial update (clients keep their
pretext heads), beside centralised pre-training on the same data for the same number of
epochs, the random initialisation and the raw-pixel baseline; frozen-backbone retrieval
R@1 / R@5 and linear probe on the held-out videos, mean ± spread (population std) over
seeds. Each seed generates its own clips and split.

The rounds run in this process, one client after another, with the engine's own pieces:
the recipe's task and partitions from ``build_run``, the strategy's ``combine`` (the
FedVSSL rule) and the client-side merge (``merge_global``, the partial update), seeds
derived per (round, client) as the ClientApp does. Nothing is simulated differently
from ``avfed run``; only Ray is left out, which a shared 2-core machine cannot afford 21
times over.

    python benchmarks/fedvssl_video.py                       # grid + throughput, 3 seeds
    python benchmarks/fedvssl_video.py --rounds 6 --seeds 0  # a quick look
    python benchmarks/fedvssl_video.py --publish-only        # table from finished runs
    python benchmarks/fedvssl_video.py --throughput-only     # the data path alone

Every finished run is appended to ``--results`` (JSON lines) at once, so a run cut short
by a time limit still publishes what it finished (``--publish-only``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, publish  # noqa: E402

from avfed.build import build_run  # noqa: E402
from avfed.config import load_config  # noqa: E402
from avfed.fl.client_merge import merge_global  # noqa: E402
from avfed.seeding import derive_seed  # noqa: E402
from avfed.tasks import TrainContext  # noqa: E402

RULES = {  # label → (alpha, beta), the rows of the paper's Table 4
    "FedAvg (0, 0)": (0.0, 0.0),
    "loss-weighted (1, 0)": (1.0, 0.0),
    "SWA (0, 1)": (0.0, 1.0),
    "(1, 1)": (1.0, 1.0),
    "(0.9, 0)": (0.9, 0.0),
    "(0.9, 1)": (0.9, 1.0),
}
CENTRAL, RANDOM, RAW = "centralised SSL", "random init", "raw pixels"
KEYS = ("recall@1", "recall@5", "probe_acc")
RECIPE = "fedvssl_moving_digits"
PLOTS = Path(__file__).resolve().parent / "plots"


def plot_path(pretext: str) -> Path:
    """The recipe's pretext (CtP) keeps the plain name; others are suffixed."""
    return PLOTS / ("fedvssl_video.png" if pretext == "ctp" else f"fedvssl_video_{pretext}.png")


def overrides(args: argparse.Namespace, seed: int) -> list[str]:
    return [f"seed={seed}", f"fl.rounds={args.rounds}", f"task.args.pretext={args.pretext}",
            f"task.args.pretext_args.clip_len={args.clip_len}",
            f"fl.num_clients={args.clients}", *args.overrides]


def federated_scores(args: argparse.Namespace, seed: int, alpha: float, beta: float
                     ) -> dict[str, float]:
    """``fl.rounds`` FedVSSL rounds over every client, then the global model's scores."""
    cfg = load_config(RECIPE, [*overrides(args, seed), f"fl.strategy_args.alpha={alpha}",
                               f"fl.strategy_args.beta={beta}"])
    built = build_run(cfg)
    task, strategy = built.task, built.strategy
    assert strategy is not None
    global_state = {k: v.detach().clone() for k, v in task.shared_state().items()}
    previous: dict[str, np.ndarray] | None = None
    saved: dict[int, dict[str, torch.Tensor]] = {}
    for rnd in range(1, cfg.fl.rounds + 1):
        config = strategy.client_config(rnd)
        states, counts, losses = [], [], []
        for client in range(cfg.fl.num_clients):
            task.model.load_state_dict(saved.get(client, built.initial_state))
            task.forget_client()
            merged = merge_global(task.shared_state(), global_state, config,
                                  first_round=client not in saved)
            task.load_shared_state(merged)
            outcome = task.train(built.client_data(client),
                                 TrainContext(derive_seed(cfg.seed, rnd, client), rnd))
            saved[client] = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
            # copies: the next client trains the same tensors in place
            states.append({k: v.detach().cpu().numpy().copy()
                           for k, v in task.shared_state().items()})
            counts.append(float(outcome.num_examples))
            losses.append(outcome.loss)
        combined = strategy.combine(rnd, states, counts, losses, previous)
        previous = combined
        global_state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in combined.items()}
    task.load_shared_state(global_state)
    return task.evaluate()


def central_and_baselines(args: argparse.Namespace, seed: int) -> dict[str, dict[str, float]]:
    """Random init and raw pixels (no training), then the pooled data for as many epochs."""
    cfg = load_config(RECIPE, overrides(args, seed))
    built = build_run(cfg)
    task = built.task
    out = {RANDOM: task.evaluate(), RAW: task.baselines()["raw input"]}
    data = built.pooled_data()
    for rnd in range(1, cfg.fl.rounds + 1):
        task.train(data, TrainContext(derive_seed(cfg.seed, rnd, 0), rnd))
    out[CENTRAL] = task.evaluate()
    return out


def record(path: Path, label: str, seed: int, scores: dict[str, float], seconds: float) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps({"label": label, "seed": seed, "scores": scores,
                             "seconds": seconds}) + "\n")
    shown = " · ".join(f"{k} {scores[k]:.3f}" for k in KEYS if k in scores)
    print(f"{label:<24} seed {seed}: {shown} ({seconds:.0f} s)", flush=True)


def run_grid(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.budget_min * 60
    for seed in args.seeds:
        if time.monotonic() > deadline:
            print(f"time budget spent; seeds from {seed} on not run", flush=True)
            break
        started = time.perf_counter()
        for label, scores in central_and_baselines(args, seed).items():
            record(args.results, label, seed, scores, time.perf_counter() - started)
        for label, (alpha, beta) in RULES.items():
            if time.monotonic() > deadline:
                print(f"time budget spent; {label} seed {seed} not run", flush=True)
                break
            started = time.perf_counter()
            scores = federated_scores(args, seed, alpha, beta)
            record(args.results, label, seed, scores, time.perf_counter() - started)


def load_results(path: Path) -> dict[str, list[dict]]:
    by_label: dict[str, list[dict]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            by_label.setdefault(row["label"], []).append(row)
    return by_label


def mean_spread(rows: list[dict], key: str) -> tuple[float, float]:
    values = [r["scores"][key] for r in rows if key in r["scores"]]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.pstdev(values)


def grid_table(by_label: dict[str, list[dict]]) -> tuple[str, list[str]]:
    order = [*RULES, CENTRAL, RANDOM, RAW]
    rows, shown = [], []
    for label in order:
        if label not in by_label:
            continue
        runs = by_label[label]
        cells: list[object] = [label, len(runs)]
        for key in KEYS:
            mean, spread = mean_spread(runs, key)
            cells.append(f"{mean:.3f} ± {spread:.3f}")
        cells.append(f"{statistics.fmean(r['seconds'] for r in runs):.0f}")
        rows.append(cells)
        shown.append(label)
    header = ["run", "seeds", "R@1", "R@5", "linear probe", "s / run"]
    return markdown_table(header, rows), shown


def save_plot(by_label: dict[str, list[dict]], labels: list[str], title: str, path: Path
              ) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(KEYS), figsize=(4.2 * len(KEYS), 3.6), squeeze=False)
    for ax, key in zip(axes[0], KEYS, strict=True):
        stats = [mean_spread(by_label[label], key) for label in labels]
        colors = ["#4C72B0" if label in RULES else "#8C8C8C" for label in labels]
        ax.bar(range(len(labels)), [m for m, _ in stats], yerr=[s for _, s in stats],
               capsize=3, color=colors)
        for label_index, label in enumerate(labels):  # each seed as a dot
            values = [r["scores"][key] for r in by_label[label] if key in r["scores"]]
            ax.plot([label_index] * len(values), values, "k.", markersize=3)
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(key)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- throughput -------------------------------------------------------------------------------

def throughput(args: argparse.Namespace, pretext_name: str, clip_len: int, threads: int,
               steps: int = 6) -> dict[str, float]:
    """Training clips per second of the recipe's pretext and backbone, and the share of
    step time spent cutting and augmenting clips (the data path: stored clips are
    decoded once, at load)."""
    torch.set_num_threads(threads)
    cfg = load_config(RECIPE, [*overrides(args, 0), f"task.args.pretext={pretext_name}",
                               f"task.args.pretext_args.clip_len={clip_len}"])
    built = build_run(cfg)
    task = built.task
    pretext = task.pretext
    videos = built.splits["video"][0].images
    batch = cfg.train.batch_size
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    data_s = step_s = 0.0
    for step in range(steps + 1):
        idx = torch.randint(0, len(videos), (batch,), generator=generator)
        started = time.perf_counter()
        with torch.no_grad():
            pretext.make_batch(videos[idx], generator)  # the data path alone
        prepared = time.perf_counter()
        loss, _ = pretext.loss(videos[idx], generator)  # data path + model, as in training
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done = time.perf_counter()
        if step:  # the first step warms up allocators and kernels
            data_s += prepared - started
            step_s += done - prepared
    return {"clips_per_s": steps * batch / step_s, "data_share": data_s / step_s}


def decode_cost(size: int = 112, frames: int = 16) -> dict[str, float]:
    """Seconds to decode and resize one 16-frame clip of a 320×240 MPEG-4 file (UCF-101's
    format) with the folder loader, which does it once per video at load time."""
    from avfed.data.sources.video_folders import decode_video
    from avfed.video import write_video

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.avi"
        write_video(path, (rng.random((150, 240, 320, 3)) * 255).astype(np.uint8), fps=25,
                    codec="mpeg4")
        started = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            decode_video(path, frames, 1, size)
        return {"decode_s": (time.perf_counter() - started) / repeats}


def throughput_section(args: argparse.Namespace) -> str:
    rows = []
    for name, clip_len in dict.fromkeys([("ctp", 8), (args.pretext, args.clip_len)]):
        for threads in (1, 2):
            result = throughput(args, name, clip_len, threads)
            rows.append([f"{name}, r3d_10 width 8, {clip_len}×32×32", threads,
                         f"{result['clips_per_s']:.1f}",
                         f"{100 * result['data_share']:.1f} %"])
    torch.set_num_threads(1)
    decode = decode_cost()
    table = markdown_table(["pretext / backbone / clip", "threads", "training clips / s",
                            "cut + augment share of step"], rows)
    note = (f"Data path share = time to cut, augment and build the pretext batch over the "
            "time of the whole training step (target < 20 %). Stored clips are decoded once "
            "when the dataset loads; decoding and resizing one 16-frame clip of a 320×240 "
            f"MPEG-4 file to 112×112 takes {decode['decode_s'] * 1000:.0f} ms on one thread. "
            "Measured on a shared, loaded 2-core machine (other jobs running), so absolute "
            "clips/s are pessimistic; the share is a ratio within one run. Two torch "
            "threads are far slower than one while other processes hold the cores (the "
            "intra-op threads wait on each other), which is why a client runs one thread "
            "per core it is given (fl.client_threads).")
    return f"{table}\n\n{note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--pretext", default="vcop")
    parser.add_argument("--clip-len", type=int, default=4)
    parser.add_argument("--budget-min", type=float, default=60.0,
                        help="stop starting new runs after this many minutes")
    parser.add_argument("--results", type=Path,
                        default=Path(tempfile.gettempdir()) / "fedvssl_video.jsonl")
    parser.add_argument("--publish-only", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--throughput-only", action="store_true",
                        help="measure and publish the data path alone (no grid)")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    torch.set_num_threads(1)  # one client at a time, as one simulation actor would
    if args.throughput_only:
        publish("FedVSSL video data path throughput (benchmarks/fedvssl_video.py "
                "--throughput-only)", throughput_section(args), "", append=not args.no_append)
        return
    if not args.publish_only:
        run_grid(args)
    by_label = load_results(args.results)
    table, labels = grid_table(by_label)
    title = (f"FedVSSL rules on moving_digits: {args.pretext}, {args.clients} clients, "
             f"{args.rounds} rounds")
    plot = plot_path(args.pretext)
    plotted = save_plot(by_label, labels, title, plot) if labels else False
    note = (f"moving_digits (10 motion classes, 40 videos each, 16 × 32 × 32, 20 % held "
            f"out), {args.clients} clients (Dirichlet α = 0.5), pretext {args.pretext} "
            f"(clip_len {args.clip_len}), r3d_10 width 8, {args.rounds} rounds × 1 local "
            f"epoch, all clients every round, partial update; centralised SSL trains the "
            f"pooled data for the same {args.rounds} epochs. Frozen backbone, each video = "
            "mean of 3 clips' features; R@k: test videos query training videos (cosine). "
            "Mean ± population std over the seeds counted. Rounds run in-process with the "
            "engine's strategy and client merge (no Ray)."
            + (f" Plot: `benchmarks/plots/{plot.name}`." if plotted else ""))
    body = f"{table}\n\n{note}"
    if not args.skip_throughput:
        body += "\n\n### Throughput of the video data path\n\n" + throughput_section(args)
    publish("FedVSSL on moving_digits: aggregation rules and data path "
            "(benchmarks/fedvssl_video.py)", body, "", append=not args.no_append)


if __name__ == "__main__":
    main()
