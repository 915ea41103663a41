"""How many epochs an SSL method needs on a recipe's data: central runs, scored on the way.

The federated comparisons train each recipe for a budget that fits a 2-core CPU (the
demo: 80 rounds of 2 clients, about 48 passes over the pooled data). Whether a method
is short of epochs or cannot learn these data at all is a question for the pooled
data, without federation: this script trains each recipe centrally (``--central``)
and scores its frozen backbone every ``--eval-every`` epochs, beside the raw-input
baseline and random init of the same split. Each (recipe, seed) is one ``avfed run``.

    python benchmarks/ssl_schedule.py simclr_cluttered byol_digits --set train.lr=0.001
    python benchmarks/ssl_schedule.py simclr_cluttered --epochs 60 --seeds 0 1 2 --set train.lr=5e-4

The pooled data are trained in rounds of ``--epochs-per-round`` epochs; each round starts
a fresh optimizer, as a federated client's round does, so that number is part of the
schedule (5 by default).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

from common import markdown_table, publish
from compare_runs import Variant, run_variant

SCORES = ("knn_acc", "probe_acc", "rankme")


def scored_rounds(run_dir: Path) -> dict[int, dict[str, float]]:
    """The rounds of ``metrics.csv`` that carry an evaluation, keyed by round."""
    rows: dict[int, dict[str, float]] = {}
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("knn_acc"):
                rows[int(row["round"])] = {k: float(row[k]) for k in SCORES if row.get(k)}
    return rows


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.pstdev(values):.3f}"


def schedule_rows(recipe: str, seeds: list[int], epochs: int, eval_every: int,
                  per_round: int, extra: list[str]) -> list[list[object]]:
    """One row per evaluated epoch (mean ± std over seeds), after the two reference rows."""
    if eval_every % per_round or epochs % eval_every:
        raise SystemExit(f"--epochs ({epochs}) must be a multiple of --eval-every "
                         f"({eval_every}), and that of --epochs-per-round ({per_round})")
    overrides = [f"fl.rounds={epochs // per_round}", f"train.local_epochs={per_round}",
                 f"fl.eval_every={eval_every // per_round}"]
    scores_by_round: dict[int, dict[str, list[float]]] = {}
    raw: dict[str, list[float]] = {}
    wall: list[float] = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            summary = run_variant(recipe, Variant("central", overrides, central=True),
                                  seed, extra, run_dir)
            for rnd, scores in scored_rounds(run_dir).items():
                for key, value in scores.items():
                    scores_by_round.setdefault(rnd, {}).setdefault(key, []).append(value)
        for key, value in summary["baselines"]["raw input"].items():
            raw.setdefault(key, []).append(value)
        wall.append(summary["wall_s"])
        print(f"{recipe} seed {seed}: {summary['wall_s']:.0f} s", flush=True)
    rows: list[list[object]] = [[recipe, "raw input (no learning)",
                                 *(cell(raw.get(k, [])) for k in SCORES)]]
    for rnd, scores in sorted(scores_by_round.items()):
        label = "random init" if rnd == 0 else f"{rnd * per_round} epochs"
        rows.append([recipe, label, *(cell(scores.get(k, [])) for k in SCORES)])
    rows[-1][1] = f"{rows[-1][1]} ({statistics.fmean(wall):.0f} s / run)"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--epochs-per-round", type=int, default=5,
                        help="epochs between optimizer restarts")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[],
                        help="extra overrides for every run (e.g. train.lr=5e-4)")
    args = parser.parse_args()

    rows = [row for recipe in args.recipes
            for row in schedule_rows(recipe, args.seeds, args.epochs, args.eval_every,
                                     args.epochs_per_round, args.overrides)]
    table = markdown_table(["recipe", "row", "kNN top-1", "linear probe", "RankMe"], rows)
    note = (f"Central runs (`avfed run --central`, pooled training split, no federation), "
            f"seeds {args.seeds}, frozen backbone scored every {args.eval_every} epochs on the "
            f"held-out split, a fresh optimizer every {args.epochs_per_round} epochs; each "
            "recipe's own model, views, batch and optimizer"
            + (f", with {' '.join(args.overrides)}" if args.overrides else "") + ". Scores "
            "are deterministic per seed on one machine; other CPUs pick other kernels.")
    publish("SSL scores over central epochs (benchmarks/ssl_schedule.py)", table, note,
            not args.no_append)


if __name__ == "__main__":
    main()
