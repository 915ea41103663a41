"""FedAvg vs L-DAWA vs FedU on the same clients, seeds and rounds (kNN / linear probe).

Every strategy runs the same recipe with the same seed, hence the same Dirichlet split,
initial model and augmentation draws; only the aggregation rule (and FedU's client-side
update) differ. Each configuration is repeated over seeds and reported as mean ± std.

    python benchmarks/aggregation.py                    # α = 0.1, 3 seeds
    python benchmarks/aggregation.py --alphas 0.1 1.0 --rounds 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import append_section, markdown_table
from compare_runs import Variant, compare, console, save_bar_plot, score_rows

STRATEGIES = {
    "FedAvg (SimCLR)": ("simclr_digits", []),
    "L-DAWA (SimCLR)": ("ldawa_digits", []),
    "FedAvg (BYOL)": ("byol_digits", []),
    "FedU (BYOL)": ("fedu_digits", []),
}
KEYS = ["knn_acc", "probe_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    sections = []
    for alpha in args.alphas:
        extra = [f"fl.rounds={args.rounds}", f"train.local_epochs={args.local_epochs}",
                 f"data.alpha={alpha}", f"fl.eval_every={args.rounds}", *args.overrides]
        outcomes = []
        for label, (recipe, overrides) in STRATEGIES.items():
            outcomes += compare(recipe, [Variant(label, overrides)], args.seeds, extra)
        rows = score_rows(outcomes, KEYS)
        table = markdown_table(["strategy", "kNN top-1", "linear probe", "wall s / run"], rows)
        plot = Path(__file__).resolve().parent / "plots" / f"aggregation_alpha{alpha}.png"
        plotted = save_bar_plot(plot, outcomes, KEYS,
                                f"Dirichlet α={alpha}, {args.rounds} rounds, "
                                f"seeds {args.seeds}")
        console.print(table)
        note = (f"Dirichlet α = {alpha}; 10 clients, {args.rounds} rounds × "
                f"{args.local_epochs} local epoch(s), seeds {args.seeds}; frozen-backbone "
                "scores on the 360 held-out digits after the last round, mean ± std over seeds."
                + (f" Plot: `benchmarks/plots/{plot.name}`." if plotted else ""))
        sections.append(f"{table}\n\n{note}")
    if not args.no_append:
        append_section("Aggregation rules on image_digits (benchmarks/aggregation.py)",
                       "\n\n".join(sections))


if __name__ == "__main__":
    main()
