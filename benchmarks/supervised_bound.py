"""How far labels take a recipe's backbone: the supervised upper bound over epochs.

The comparison benchmarks (aggregation.py, fssuavl.py, fassl.py) put a supervised row
under their SSL rows, trained for a few epochs to fit their budget. With the recipes'
strong views (crops down to a third of the side, colour jitter, inversion) and the
SSL recipes' Adam 2e-3 the network can stay at chance (``ldawa_digits``, seed 0: 0.106
after 15 epochs, 0.125 after 40), which says more about the schedule than about the
backbone; at 1e-3 it reaches 0.464 after 15. This script trains the same backbone, on
the same split and views, at a learning rate and for epochs of your choice, beside the
raw-input baseline of that split, so the bound can be read as one.

    python benchmarks/supervised_bound.py ldawa_digits --epochs 10 40 --seeds 0 1 2
    python benchmarks/supervised_bound.py fssuavl_digits --epochs 40
"""

from __future__ import annotations

import argparse

from common import markdown_table, publish
from compare_runs import Outcome, score_rows, supervised_bound

from avfed.build import load_data
from avfed.config import load_config
from avfed.eval.protocols import raw_input_scores


def raw_baseline(recipe: str, seeds: list[int], extra: list[str]) -> Outcome:
    """kNN / probe on the flattened inputs of each seed's split (the row to beat)."""
    raw = Outcome("raw input (no learning)")
    for seed in seeds:
        cfg = load_config(recipe, [f"seed={seed}", *extra])
        raw.finals.append(raw_input_scores(load_data(cfg), cfg))
    raw.wall_s = [float("nan")]
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam's learning rate (2e-3, the SSL recipes' own, left the "
                             "image backbone at chance through their views)")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    outcomes = [raw_baseline(args.recipe, args.seeds, args.overrides)]
    for epochs in args.epochs:
        bound = supervised_bound(args.recipe, args.seeds, epochs, args.overrides, args.lr)
        bound.label = f"supervised, {epochs} epochs"
        outcomes.append(bound)
    keys = [k for k in outcomes[-1].finals[0] if k.endswith("probe_acc")]
    table = markdown_table(["row", *(f"{k} (test accuracy)" for k in keys), "wall s / run"],
                           score_rows(outcomes, keys))
    note = (f"`{args.recipe}`, seeds {args.seeds}: the recipe's backbone and a linear head "
            "trained centrally with labels on the recipe's training split and views (Adam "
            f"{args.lr:g}, batch 64), scored on its held-out split; the first row is the linear "
            "probe on the raw input of the same split.")
    publish(f"Supervised upper bound of {args.recipe} (benchmarks/supervised_bound.py)",
            table, note, not args.no_append)


if __name__ == "__main__":
    main()
