"""FASSL on spoken digits: federated vs centralised audio SSL, per method, side by side.

For each method (SimCLR and Barlow Twins = feature matching, ACOP = predictive) the
``fassl_spoken_digits`` recipe runs once federated (FedAvg, clients = whole speakers)
and once centralised on the pooled data with the same schedule; frozen-backbone kNN,
linear probe, recall@1 and mAP on held-out speakers are reported as mean ± std.

    python benchmarks/fassl.py --seeds 0 1 --rounds 6
"""

from __future__ import annotations

import argparse

from common import markdown_table, publish
from compare_runs import Variant, compare, score_rows

METHODS = {
    "SimCLR": ["ssl.method=simclr", "ssl.args.temperature=0.5"],
    "Barlow Twins": ["ssl.method=barlow_twins"],
    "ACOP": ["ssl.method=acop"],
}
KEYS = ["knn_acc", "probe_acc", "recall@1", "mAP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    extra = [f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}", *args.overrides]
    variants = []
    for name in args.methods:
        variants += [Variant(f"{name} · federated", METHODS[name]),
                     Variant(f"{name} · centralised", METHODS[name], central=True)]
    outcomes = compare("fassl_spoken_digits", variants, args.seeds, extra)
    initial = outcomes[0].initials[0]
    rows = [["random init", *[f"{initial.get(k, float('nan')):.3f}" for k in KEYS], "—"]]
    rows += score_rows(outcomes, KEYS)
    table = markdown_table(["method · training", "kNN top-1", "linear probe", "recall@1",
                            "mAP", "wall s / run"], rows)
    note = (f"`fassl_spoken_digits`: 8 clients holding whole speakers, {args.rounds} rounds × 3 "
            f"local epochs, seeds {args.seeds}; centralised = the same schedule on the pooled "
            "training speakers. Scores on held-out speakers (retrieval: test clips query the "
            "training clips).")
    publish("FASSL: federated vs centralised audio SSL (benchmarks/fassl.py)",
            table, note, not args.no_append)


if __name__ == "__main__":
    main()
