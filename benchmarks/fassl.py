"""FASSL on noisy spoken digits: federated vs centralised audio SSL, per method, side by side.

For each method (SimCLR and Barlow Twins = feature matching, ACOP = predictive) the
``fassl_spoken_digits`` recipe runs once federated (FedAvg, clients = whole speakers)
and once centralised on the pooled data with the same schedule; frozen-backbone kNN,
linear probe, recall@1 and mAP on held-out speakers are reported as mean ± std, below
the rows a learned model has to beat (log-mel baselines and the random-init backbone,
from the same runs) and the supervised upper bound.

    python benchmarks/fassl.py --seeds 0 1 2 --methods SimCLR --jobs 2

``--jobs 2`` runs two recipes at a time (each in its own process): on a 2-core machine
the wall time per run then roughly doubles while the table arrives in about half the
time; the wall column is the time each run took under that sharing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import markdown_table, publish
from compare_runs import (
    Variant,
    compare,
    reference_outcomes,
    save_bar_plot,
    score_rows,
    supervised_bound,
)

RECIPE = "fassl_spoken_digits"
METHODS = {
    "SimCLR": ["ssl.method=simclr"],
    "Barlow Twins": ["ssl.method=barlow_twins"],
    "ACOP": ["ssl.method=acop"],
}
KEYS = ["knn_acc", "probe_acc", "recall@1", "mAP"]
PLOTS = Path(__file__).resolve().parent / "plots"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--training", nargs="+", default=["federated", "centralised"],
                        choices=["federated", "centralised"],
                        help="which trainings to run per method (default: both)")
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
        variants += [Variant(f"{name} · {training}", METHODS[name],
                             central=training == "centralised")
                     for training in ("federated", "centralised") if training in args.training]
    outcomes = compare(RECIPE, variants, args.seeds, extra, args.jobs)
    references = reference_outcomes(outcomes)
    if args.supervised_epochs > 0:
        references.append(supervised_bound(RECIPE, args.seeds, args.supervised_epochs, extra))
    rows = score_rows([*references, *outcomes], KEYS)
    table = markdown_table(["method · training", "kNN top-1", "linear probe", "recall@1",
                            "mAP", "wall s / run"], rows)
    from avfed.config import load_config

    cfg = load_config(RECIPE, extra)
    # one file per choice of methods and trainings: a partial run keeps the others' plots
    tag = "".join(f"_{m.lower().replace(' ', '')}" for m in args.methods
                  if len(args.methods) < len(METHODS))
    tag += "".join(f"_{t}" for t in args.training if len(args.training) < 2)
    plot = PLOTS / f"fassl{tag}.png"
    plotted = save_bar_plot(plot, [*references, *outcomes], ["knn_acc", "probe_acc"],
                            f"FASSL on noisy_spoken_digits, seeds {args.seeds}")
    note = (f"`{RECIPE}` on noisy_spoken_digits ({cfg.data.num_speakers} speakers, "
            f"{cfg.model.name} width {cfg.model.args.get('width', '—')}): "
            f"{cfg.fl.num_clients} clients holding whole speakers, {cfg.fl.rounds} rounds × "
            f"{cfg.train.local_epochs} local epochs, seeds {args.seeds}; centralised = the "
            "same schedule on the pooled training speakers. Scores on held-out speakers "
            "(retrieval: test clips query the training clips). First rows: what a learned "
            "row must beat, from the same runs — kNN / probe on the flattened log-mel and "
            "on per-band log-mel statistics, and the random-init backbone"
            + (f"; then the supervised upper bound ({args.supervised_epochs} epochs, test "
               "accuracy in the probe column)" if args.supervised_epochs else "")
            + f". {args.jobs} run(s) at a time on a machine shared with other jobs: wall "
            "times are loose, compare them within the table."
            + (f" Plot: `benchmarks/plots/{plot.name}`." if plotted else ""))
    publish("FASSL: federated vs centralised audio SSL (benchmarks/fassl.py)",
            table, note, not args.no_append)


if __name__ == "__main__":
    main()
