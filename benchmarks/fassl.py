"""FASSL on spoken digits: federated vs centralised audio SSL, per method, side by side.

For each method (SimCLR and Barlow Twins = feature matching, ACOP = predictive) the
``fassl_spoken_digits`` recipe runs once federated (FedAvg, clients = whole speakers)
and once centralised on the pooled data with the same schedule; frozen-backbone kNN,
linear probe, recall@1 and mAP on held-out speakers are reported as mean ± std.

    python benchmarks/fassl.py --seeds 0 1 2 --methods SimCLR
"""

from __future__ import annotations

import argparse

from common import markdown_table, publish
from compare_runs import Variant, compare, reference_outcomes, score_rows, supervised_bound

METHODS = {
    "SimCLR": ["ssl.method=simclr", "ssl.args.temperature=0.5"],
    "Barlow Twins": ["ssl.method=barlow_twins"],
    "ACOP": ["ssl.method=acop"],
}
KEYS = ["knn_acc", "probe_acc", "recall@1", "mAP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--supervised-epochs", type=int, default=20,
                        help="epochs of the supervised upper bound (0: leave it out)")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    extra = list(args.overrides)
    if args.rounds is not None:
        extra = [f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}", *extra]
    variants = []
    for name in args.methods:
        variants += [Variant(f"{name} · federated", METHODS[name]),
                     Variant(f"{name} · centralised", METHODS[name], central=True)]
    outcomes = compare("fassl_spoken_digits", variants, args.seeds, extra)
    references = reference_outcomes(outcomes)
    if args.supervised_epochs > 0:
        references.append(supervised_bound("fassl_spoken_digits", args.seeds,
                                           args.supervised_epochs, extra))
    rows = score_rows([*references, *outcomes], KEYS)
    table = markdown_table(["method · training", "kNN top-1", "linear probe", "recall@1",
                            "mAP", "wall s / run"], rows)
    rounds = args.rounds or "the recipe's"
    note = (f"`fassl_spoken_digits` (noisy_spoken_digits): 8 clients holding whole speakers, "
            f"{rounds} rounds, seeds {args.seeds}; centralised = the same schedule on the "
            "pooled training speakers. Scores on held-out speakers (retrieval: test clips "
            "query the training clips). First rows: what a learned row must beat, from the "
            "same runs — kNN / probe on the flattened log-mel and on per-band log-mel "
            "statistics, and the random-init backbone"
            + (f"; then the supervised upper bound ({args.supervised_epochs} epochs, test "
               "accuracy in the probe column)" if args.supervised_epochs else "") + ".")
    publish("FASSL: federated vs centralised audio SSL (benchmarks/fassl.py)",
            table, note, not args.no_append)


if __name__ == "__main__":
    main()
