"""Does the fast training step cost quality? fp32 vs ``train.precision=auto`` (or a forced
precision) on the same recipes, seeds and schedule: kNN and linear probe, mean ± std.

Each variant is one ``avfed run`` per seed (same split, initial weights and augmentation
draws); only the arithmetic of the local steps differs. Random-init and raw-input scores
are printed beside them, and the client training time per round shows what was gained.

    python benchmarks/precision_quality.py                       # auto vs fp32, α = 0.1
    python benchmarks/precision_quality.py --fast bf16 --recipes simclr_digits
"""

from __future__ import annotations

import argparse
import statistics

from common import append_section, markdown_table
from compare_runs import Variant, compare, console

KEYS = ["knn_acc", "probe_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["simclr_digits", "ldawa_digits"],
                        help="built-in names or recipe files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--fast", default="auto", help="train.precision of the fast variant")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    extra = [f"fl.rounds={args.rounds}", f"train.local_epochs={args.local_epochs}",
             f"data.alpha={args.alpha}", f"fl.eval_every={args.rounds}", *args.overrides]
    variants = [Variant("fp32 · contiguous", ["train.precision=fp32",
                                              "train.memory_format=contiguous"]),
                Variant(f"{args.fast} · memory_format auto", [f"train.precision={args.fast}"])]
    rows = []
    for recipe in args.recipes:
        outcomes = compare(recipe, variants, args.seeds, extra)
        initial = outcomes[0].initials
        rows.append([recipe.rsplit("/", 1)[-1], "random init",
                     *(f"{statistics.fmean(i[k] for i in initial):.3f}" for k in KEYS), "", ""])
        for outcome in outcomes:
            cells = [recipe.rsplit("/", 1)[-1], outcome.label]
            for key in KEYS:
                mean, std = outcome.mean_std(key)
                per_seed = ", ".join(f"{f[key]:.3f}" for f in outcome.finals)
                cells.append(f"{mean:.3f} ± {std:.3f} ({per_seed})")
            cells += [f"{statistics.fmean(outcome.client_train_s):.1f}",
                      f"{statistics.fmean(outcome.wall_s):.0f}"]
            rows.append(cells)
    table = markdown_table(["recipe", "training step", "kNN top-1 (per seed)",
                            "linear probe (per seed)", "client train s / round", "wall s / run"],
                           rows)
    console.print(table)
    note = (f"Dirichlet α = {args.alpha}; 10 clients, {args.rounds} rounds × "
            f"{args.local_epochs} local epoch(s), seeds {args.seeds}; frozen-backbone scores "
            "after the last round, mean ± std over seeds (population std), evaluation in fp32 "
            "for every variant. Wall and training times were measured on a shared, loaded "
            "machine: read them as a rough ratio only (benchmarks/train_step.py measures "
            "speed properly).")
    if not args.no_append:
        append_section("Training-step precision vs quality (benchmarks/precision_quality.py)",
                       f"{table}\n\n{note}")


if __name__ == "__main__":
    main()
