"""How much does Flower's simulation engine cost on top of the clients' own training?

Runs a recipe for a few rounds in simulation; each client times its training inside
the ClientApp. For every round, ideal = Σ client training time ÷ clients that can run
in parallel, and the ratio = round wall time ÷ ideal. Round 1 includes the engine's
start-up (Ray, actors, first data load) and is reported separately. The same client
work is then run serially in this one process, without Flower, for comparison.

    python benchmarks/fl_overhead.py [--rounds 4] [key=value overrides ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from avfed.build import build_run
from avfed.config import load_config
from avfed.fl.simulation import parallel_clients, run_federated
from avfed.runs import RunDir
from avfed.seeding import derive_seed
from avfed.tasks import TrainContext

try:
    from common import append_section, markdown_table
except ImportError:  # run as a module from the project root
    from benchmarks.common import append_section, markdown_table

console = Console(highlight=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def serial_round(cfg, server_round: int) -> tuple[float, float]:
    """All clients' local training one after another in this process, no Flower: the
    same task calls a ClientApp makes, without the engine around them."""
    torch.set_num_threads(cfg.fl.client_cpus)
    built = build_run(cfg, with_strategy=False)
    task = built.task
    start = time.perf_counter()
    train_total = 0.0
    for pid in range(cfg.fl.num_clients):
        task.model.load_state_dict(built.initial_state)
        task.forget_client()
        outcome = task.train(built.client_data(pid), TrainContext(
            seed=derive_seed(cfg.seed, server_round, pid), server_round=server_round))
        train_total += outcome.seconds
    return time.perf_counter() - start, train_total


def greedy_makespan(times: list[float], workers: int) -> float:
    """Longest-processing-time-first schedule: what perfect packing of these clients costs.

    Unequal client sizes (Dirichlet splits) mean even a perfect scheduler cannot reach
    Σ/workers; this separates that imbalance from the engine's own overhead.
    """
    loads = [0.0] * workers
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--recipe", default="simclr_digits")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.recipe, [f"fl.rounds={args.rounds}", "fl.eval_every=1000",
                                    *args.overrides])
    workers = parallel_clients(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(cfg, Path(tmp) / "run")
        run_federated(build_run(cfg), run)
        rounds = [r for r in read_jsonl(run.path / "metrics.jsonl") if r["round"] > 0]
        clients = read_jsonl(run.path / "clients.jsonl")

    rows = []
    later_ratios = []
    for r in rounds:
        times = [c["train-time"] for c in clients if c["round"] == r["round"]]
        train_sum = sum(times)
        packed = greedy_makespan(times, workers)
        handler_sum = sum(c["handler-time"] for c in clients if c["round"] == r["round"])
        ideal = train_sum / workers
        ratio = r["round_s"] / ideal
        if r["round"] > 1:
            later_ratios.append(ratio)
        rows.append([r["round"], f"{r['round_s']:.2f}", f"{train_sum:.2f}", f"{handler_sum:.2f}",
                     f"{ideal:.2f}", f"{ratio:.3f}" + (" (start-up)" if r["round"] == 1 else ""),
                     f"{packed:.2f}", f"{r['round_s'] / packed:.3f}"])
    serial_wall, serial_train = serial_round(cfg, 2)
    mean_ratio = sum(later_ratios) / len(later_ratios) if later_ratios else float("nan")
    startup = rounds[0]["round_s"] - float(rows[0][4])
    later = [r["round_s"] for r in rounds[1:]] or [rounds[0]["round_s"]]
    later_wall = sum(later) / len(later)
    header = ["round", "wall s", "Σ client train s", "Σ client handler s", "ideal s",
              "wall / ideal", "LPT packing s", "wall / packing"]
    table = markdown_table(header, rows)
    notes = (
        f"{cfg.fl.num_clients} clients, {workers} in parallel ({cfg.fl.client_cpus} core each), "
        f"recipe `{cfg.name}` ({cfg.model.name} {cfg.model.args}, {cfg.train.local_epochs} "
        f"local epochs).\n\n"
        f"- engine start-up (round 1 wall − its ideal): {startup:.2f} s\n"
        f"- rounds after the first: mean wall / ideal = **{mean_ratio:.3f}** (target ≤ 1.15)\n"
        f"- the same client work serially in one process, no Flower: {serial_wall:.2f} s "
        f"(Σ train {serial_train:.2f} s); a simulated round after the first takes "
        f"{later_wall:.2f} s: speed-up over serial {serial_wall / later_wall:.2f}× "
        f"with {workers} workers (wall / ideal alone cannot show oversubscription, which "
        "inflates the clients' own training times)"
    )
    console.print(table)
    console.print(notes)
    append_section("Flower simulation overhead (benchmarks/fl_overhead.py)", f"{table}\n\n{notes}")


if __name__ == "__main__":
    main()
