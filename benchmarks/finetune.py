"""Fine-tuning after SSL vs training from scratch, same backbone, data and schedule.

1. ``simclr_digits`` (federated SimCLR) pre-trains a backbone;
2. ``simclr_digits_finetune`` fine-tunes it with labels (full, and linear head only);
3. ``task.name=supervised`` trains the same backbone from random weights.
Each step is one ``avfed run`` in its own process; top-1 on the held-out digits.

    python benchmarks/finetune.py --seeds 0 --ssl-rounds 10
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import markdown_table, publish
from compare_runs import Variant, compare, run_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ssl-rounds", type=int, default=10)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            ssl_dir = Path(tmp) / f"ssl-{seed}"
            ssl = run_variant("simclr_digits", Variant("SSL", [f"fl.rounds={args.ssl_rounds}",
                                                            f"fl.eval_every={args.ssl_rounds}"]),
                              seed, [], run_dir=ssl_dir)
            init = f"task.args.init={ssl_dir / 'final.safetensors'}"
            variants = [
                Variant("fine-tune (full)", [init]),
                Variant("fine-tune (linear head)", [init, "task.args.mode=linear",
                                                    "train.lr=0.01"]),
                Variant("supervised from scratch", ["task.name=supervised",
                                                    "task.args.label_smoothing=0.1"]),
            ]
            outcomes = compare("simclr_digits_finetune", variants, [seed], [])
            rows.append([seed, "SimCLR frozen features (linear probe)",
                         f"{ssl['final']['probe_acc']:.3f}"])
            rows += [[seed, o.label, f"{o.finals[0]['accuracy']:.3f}"] for o in outcomes]
    table = markdown_table(["seed", "model", "top-1"], rows)
    note = (f"`simclr_digits` pre-training for {args.ssl_rounds} rounds, then "
            "`simclr_digits_finetune` (10 clients, Dirichlet 0.5) with the recipe's schedule; "
            "'from scratch' is the same recipe with task.name=supervised.")
    publish("Fine-tuning after SSL vs from scratch (benchmarks/finetune.py)",
            table, note, not args.no_append)


if __name__ == "__main__":
    main()
