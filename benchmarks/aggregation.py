"""FedAvg vs L-DAWA vs FedU vs FedEMA on the same clients, seeds and rounds (kNN / probe).

Every strategy runs the same recipe family with the same seed, hence the same Dirichlet
split, initial model and augmentation draws; only the aggregation rule (and FedU's /
FedEMA's client-side update) differ. Each configuration is repeated over seeds and
reported as mean ± std, under the rows it has to beat: the raw-pixel kNN and probe,
the random-init backbone and, unless ``--supervised-epochs 0``, the same backbone
trained centrally with labels (the upper bound).

    python benchmarks/aggregation.py                    # α = 0.1 and 1.0, 3 seeds
    python benchmarks/aggregation.py --alphas 0.1 --strategies FedAvg L-DAWA
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import append_section, markdown_table
from compare_runs import (
    Variant,
    compare,
    console,
    reference_outcomes,
    save_bar_plot,
    score_rows,
    supervised_bound,
)

# label, recipe, overrides. FedAvg (SimCLR) is L-DAWA's own recipe with the rule swapped,
# so the pair differs in aggregation alone (the demo recipe trains twice as many rounds).
STRATEGIES: dict[str, tuple[str, str, list[str]]] = {
    "FedAvg": ("FedAvg (SimCLR)", "ldawa_digits", ["fl.strategy=fedavg"]),
    "L-DAWA": ("L-DAWA (SimCLR)", "ldawa_digits", []),
    "FedAvg-BYOL": ("FedAvg (BYOL)", "byol_digits", []),
    "FedU": ("FedU (BYOL)", "fedu_digits", []),
    "FedEMA": ("FedEMA (BYOL)", "fedema_digits", []),
}
KEYS = ["knn_acc", "probe_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        choices=list(STRATEGIES))
    parser.add_argument("--rounds", type=int, default=None,
                        help="default: each recipe's own")
    parser.add_argument("--local-epochs", type=int, default=None,
                        help="default: each recipe's own")
    parser.add_argument("--supervised-epochs", type=int, default=20,
                        help="epochs of the supervised upper bound (0: leave it out)")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    sections = []
    for alpha in args.alphas:
        extra = [f"data.alpha={alpha}", *args.overrides]
        if args.rounds is not None:
            extra += [f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}"]
        if args.local_epochs is not None:
            extra.append(f"train.local_epochs={args.local_epochs}")
        outcomes = []
        for name in args.strategies:
            label, recipe, overrides = STRATEGIES[name]
            outcomes += compare(recipe, [Variant(label, overrides)], args.seeds, extra)
        references = reference_outcomes(outcomes)
        if args.supervised_epochs > 0:
            first_recipe = STRATEGIES[args.strategies[0]][1]
            references.append(supervised_bound(first_recipe, args.seeds,
                                               args.supervised_epochs, extra))
        rows = score_rows([*references, *outcomes], KEYS)
        table = markdown_table(["strategy", "kNN top-1", "linear probe", "wall s / run"],
                               rows)
        plot = Path(__file__).resolve().parent / "plots" / f"aggregation_alpha{alpha}.png"
        plotted = save_bar_plot(plot, [*references, *outcomes], KEYS,
                                f"Dirichlet α={alpha}, seeds {args.seeds}")
        console.print(table)
        schedule = (f"{args.rounds} rounds" if args.rounds else "each recipe's rounds") + (
            f" × {args.local_epochs} local epoch(s)" if args.local_epochs else "")
        note = (f"Dirichlet α = {alpha}; 10 clients, {schedule}, seeds {args.seeds}; "
                "frozen-backbone scores on the held-out split after the last round, mean ± "
                "std over seeds. The first rows are what the learned rows must beat: the "
                "trivial baselines on the raw input and the random-init backbone (round 0), "
                "from the same runs"
                + (f", and the supervised upper bound ({args.supervised_epochs} epochs, "
                   "test accuracy in the probe column)" if args.supervised_epochs else "")
                + "." + (f" Plot: `benchmarks/plots/{plot.name}`." if plotted else ""))
        sections.append(f"{table}\n\n{note}")
    if not args.no_append:
        append_section("Aggregation rules on cluttered_digits (benchmarks/aggregation.py)",
                       "\n\n".join(sections))


if __name__ == "__main__":
    main()
