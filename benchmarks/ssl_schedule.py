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
import tempfile
from pathlib import Path

from common import markdown_table, publish
from compare_runs import Outcome, Variant, reference_outcomes, run_variant, score_rows

SCORE_SUFFIXES = ("knn_acc", "probe_acc", "rankme")  # per modality: image_knn_acc, …


def scored_rounds(run_dir: Path) -> tuple[list[str], dict[int, dict[str, float]]]:
    """The score columns of ``metrics.csv`` and its evaluated rounds, keyed by round."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        keys = [k for k in reader.fieldnames or [] if k.endswith(SCORE_SUFFIXES)]
        rows = {int(row["round"]): {k: float(row[k]) for k in keys if row.get(k)}
                for row in reader if any(row.get(k) for k in keys)}
    return keys, rows


def schedule_table(recipe: str, seeds: list[int], epochs: int, eval_every: int,
                   per_round: int, extra: list[str]) -> str:
    """One row per evaluated epoch (mean ± std over seeds), under the raw-input rows."""
    if eval_every % per_round or epochs % eval_every:
        raise SystemExit(f"--epochs ({epochs}) must be a multiple of --eval-every "
                         f"({eval_every}), and that of --epochs-per-round ({per_round})")
    overrides = [f"fl.rounds={epochs // per_round}", f"train.local_epochs={per_round}",
                 f"fl.eval_every={eval_every // per_round}"]
    keys: list[str] = []
    runs = Outcome(recipe)  # carries each seed's baselines and random init
    by_round: dict[int, Outcome] = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            summary = run_variant(recipe, Variant("central", overrides, central=True),
                                  seed, extra, run_dir)
            keys, rounds = scored_rounds(run_dir)
        runs.initials.append(rounds.pop(0))
        runs.baselines.append(summary["baselines"])
        runs.wall_s.append(summary["wall_s"])
        for rnd, scores in rounds.items():
            by_round.setdefault(rnd, Outcome(f"{rnd * per_round} epochs")).finals.append(scores)
        print(f"{recipe} seed {seed}: {summary['wall_s']:.0f} s", flush=True)
    rows = [*reference_outcomes([runs]), *(by_round[rnd] for rnd in sorted(by_round))]
    rows[-1].wall_s = runs.wall_s  # the whole run's time, on the row it ends with
    return f"`{recipe}`\n\n" + markdown_table(["row", *keys, "wall s / run"],
                                                  score_rows(rows, keys))


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

    table = "\n\n".join(schedule_table(recipe, args.seeds, args.epochs, args.eval_every,
                                        args.epochs_per_round, args.overrides)
                         for recipe in args.recipes)
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
