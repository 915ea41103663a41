"""Supervised backbones on the built-in data: VAN with LKA vs LSKA over the kernel size,
and AudioInceptionNeXt vs AudioRepInceptionNeXt in train and folded deploy form.

Accuracy comes from the recipes' federated supervised runs (``van_lska_digits``,
``audio_*inceptionnext_spoken_digits``); parameters, MACs and CPU latency (batch 1, one
thread, median) from the same backbone built as the run builds it. For the Rep model,
the deploy form is the folded copy the run scores as ``deploy_accuracy``.

    python benchmarks/classifiers.py --seeds 0 --kernels 7 11 23 35 53 --rounds 10
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import count_macs, count_params, markdown_table, median_latency_ms, publish
from compare_runs import Variant, compare

from avfed import models
from avfed.models.reparam import reparameterize_model


def _cost(name: str, args: dict, shape: tuple[int, ...], deploy: bool = False
          ) -> tuple[int, float, float]:
    torch.manual_seed(0)
    model = models.create(name, in_chans=shape[0], **args).eval()
    if deploy:
        model = reparameterize_model(model)
    x = torch.randn(1, *shape)
    torch.set_num_threads(1)
    with torch.inference_mode():
        latency = median_latency_ms(lambda: model(x), repeats=30, warmup=3)
    return count_params(model), count_macs(model, x) / 1e6, latency


def _accuracy(outcome, key: str = "accuracy") -> str:
    mean, std = outcome.mean_std(key)
    return f"{mean:.3f} ± {std:.3f}" if len(outcome.finals) > 1 else f"{mean:.3f}"


def van_table(seeds: list[int], kernels: list[int], extra: list[str]) -> str:
    variants = [Variant(f"VAN-nano {att.upper()} k={k}",
                        [f"model.args.attention={att}", f"model.args.kernel_size={k}"])
                for k in kernels for att in ("lka", "lska")]
    outcomes = compare("van_lska_digits", variants, seeds, extra)
    rows = []
    for variant, outcome in zip(variants, outcomes, strict=True):
        att, k = variant.overrides[0].split("=")[1], int(variant.overrides[1].split("=")[1])
        params, macs, latency = _cost("van_nano", {"attention": att, "kernel_size": k},
                                      (1, 32, 32))
        rows.append([att.upper(), k, _accuracy(outcome), f"{params / 1e3:.1f}k",
                     f"{macs:.2f}", f"{latency:.2f}"])
    return markdown_table(["attention", "k", "top-1", "params", "MMACs", "latency ms"], rows)


def audio_table(seeds: list[int], extra: list[str]) -> str:
    rows = []
    for recipe, name, rep in (("audio_inceptionnext_spoken_digits", "audio_inceptionnext_tiny",
                               False),
                              ("audio_rep_inceptionnext_spoken_digits",
                               "audio_rep_inceptionnext_tiny", True)):
        (outcome,) = compare(recipe, [Variant(recipe, [])], seeds, extra)
        shape = (1, 40, 51)
        forms = [("train", False), ("deploy", True)] if rep else [("train", False)]
        for form, deploy in forms:
            params, macs, latency = _cost(name, {}, shape, deploy=deploy)
            key = "deploy_accuracy" if deploy else "accuracy"
            rows.append([name, form, _accuracy(outcome, key), f"{params / 1e3:.1f}k",
                         f"{macs:.2f}", f"{latency:.2f}",
                         f"{statistics.fmean(outcome.client_train_s):.2f}"])
    return markdown_table(["model", "form", "top-1", "params", "MMACs", "latency ms",
                           "client s / round"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=[7, 11, 23, 35, 53])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", choices=["van", "audio"], default=None)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    extra = [f"fl.rounds={args.rounds}", f"fl.eval_every={args.rounds}"]
    if args.only in (None, "van"):
        table = van_table(args.seeds, args.kernels, extra)
        note = (f"`van_lska_digits` (VAN-nano, supervised, 10 clients, Dirichlet 0.5, "
                f"{args.rounds} rounds × 3 epochs), seeds {args.seeds}; cost on one 1×32×32 "
                "input, batch 1, one thread.")
        publish("VAN: LKA vs LSKA over the kernel size, supervised "
                "(benchmarks/classifiers.py)", table, note, not args.no_append)
    if args.only in (None, "audio"):
        table = audio_table(args.seeds, [])  # the recipes' own schedule
        note = (f"`audio_*inceptionnext_spoken_digits` (supervised, held-out speakers, the "
                f"recipes' 20 rounds), seeds {args.seeds}; cost on one 40-mel × 51-frame "
                "input, batch 1, one thread; deploy = the folded AudioRep model.")
        publish("AudioInceptionNeXt vs AudioRepInceptionNeXt, supervised, train "
                "and deploy form (benchmarks/classifiers.py)",
            table, note, not args.no_append)


if __name__ == "__main__":
    main()
