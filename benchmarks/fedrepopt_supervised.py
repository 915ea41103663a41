"""FedRepOpt, supervised, on non-IID clients: RepOpt vs the multi-branch model vs the plain
model with plain SGD, for VGG and GhostNet — accuracy, client time and training memory.

The paper's claim under test: the plain model trained with the RepOpt optimizer reaches
the multi-branch model's accuracy at the plain model's training cost. Each variant is
the ``fedrepopt_supervised_digits`` recipe with one override set; accuracy is the final
global model's top-1 on the held-out digits (RepVGG also folded to its deploy form),
client time is the mean local round per client, and training memory is the peak
resident-set growth while one client trains one round (in a fresh process).

    python benchmarks/fedrepopt_supervised.py --seeds 0 1 2 --alphas 0.1 1.0 --rounds 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from common import markdown_table, publish
from compare_runs import Variant, compare

FAMILIES = {
    "vgg": {
        "RepOpt-VGG + RepOpt SGD": ["model.name=repopt_vgg_tiny", "train.optimizer=repopt"],
        "RepVGG (multi-branch) + SGD": ["model.name=repvgg_tiny", "train.optimizer=sgd"],
        "plain VGG + SGD": ["model.name=repopt_vgg_tiny", "train.optimizer=sgd"],
    },
    "ghost": {
        "RepOpt-Ghost + RepOpt SGD": ["model.name=repopt_ghost_tiny",
                                      "train.optimizer=repopt"],
        "RepGhost (multi-branch) + SGD": ["model.name=repghost_tiny", "train.optimizer=sgd"],
        "plain Ghost + SGD": ["model.name=repopt_ghost_tiny", "train.optimizer=sgd"],
    },
}
RECIPE = "fedrepopt_supervised_digits"

# one client's round in a fresh process: (seconds, peak RSS growth in MiB)
_MEMORY_PROBE = """
import json, resource, sys
from avfed.build import build_run
from avfed.config import load_config
from avfed.tasks import TrainContext
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]))
built = build_run(cfg, with_strategy=False)
data = built.client_data(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = built.task.train(data, TrainContext(seed=0, server_round=1))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": outcome.seconds, "peak_mib": (after - before) / 1024}))
"""


def training_memory(overrides: list[str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, RECIPE, json.dumps(overrides)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    extra = [f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}", *args.overrides]
    rows = []
    for family, alpha in ((f, a) for f in args.families for a in args.alphas):
        chosen = FAMILIES[family]
        variants = [Variant(f"{name} · α={alpha}", [*o, f"data.alpha={alpha}"])
                    for name, o in chosen.items()]
        outcomes = compare(RECIPE, variants, args.seeds, extra)
        for (name, overrides), outcome in zip(chosen.items(), outcomes, strict=True):
            acc, acc_sd = outcome.mean_std("accuracy")
            deploy = [f["deploy_accuracy"] for f in outcome.finals if "deploy_accuracy" in f]
            memory = training_memory([*overrides, f"data.alpha={alpha}", *args.overrides])
            rows.append([
                name, alpha, f"{acc:.3f} ± {acc_sd:.3f}",
                f"{statistics.fmean(deploy):.3f}" if deploy else "—",
                f"{statistics.fmean(outcome.client_train_s):.2f}",
                f"{memory['peak_mib']:.0f}",
            ])
    table = markdown_table(["model + optimizer", "Dirichlet α", "top-1 (mean ± std)",
                            "deploy-form top-1", "client s / round", "training peak MiB"],
                           rows)
    note = (f"`{RECIPE}`: 10 clients, {args.rounds} rounds × 1 local epoch, FedAvg, label "
            f"smoothing 0.1, seeds {args.seeds}. Client time: mean local round over all "
            "clients and rounds (2 clients in parallel); training memory: peak resident-set "
            "growth while client 0 trains one round in a fresh process.")
    publish("FedRepOpt, supervised: RepOpt vs multi-branch vs plain "
            "(benchmarks/fedrepopt_supervised.py)", table, note, not args.no_append)


if __name__ == "__main__":
    main()
