"""What the built-in corpora score with no learning at all, clean vs hard, over seeds.

For each recipe's split: kNN (k = 20, cosine) and a linear probe on the flattened input
(pixels, or the standardised log-mel) and, for audio, on per-band log-mel statistics —
exactly the baselines every run prints first. A learned representation is only worth
what it adds over these.

    python benchmarks/data_baselines.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics

from common import markdown_table, publish

from avfed.build import load_data
from avfed.config import load_config
from avfed.eval.baselines import log_mel_statistics_scores
from avfed.eval.protocols import raw_input_scores

# (corpus, recipe it is measured with, overrides that select the corpus)
CORPORA = [
    ("image_digits (clean)", "simclr_digits", []),
    ("cluttered_digits", "simclr_cluttered", []),
    ("spoken_digits (clean)", "fassl_spoken_digits",
     ["data.source=spoken_digits", "data.audio.duration_s=0.8"]),
    ("noisy_spoken_digits", "fassl_spoken_digits", []),
]


def cell(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    for corpus, recipe, overrides in CORPORA:
        scores: dict[str, list[float]] = {}
        sizes = ""
        for seed in args.seeds:
            cfg = load_config(recipe, [f"seed={seed}", *overrides])
            splits = load_data(cfg)
            train, test = next(iter(splits.values()))
            sizes = f"{len(train)} / {len(test)}"
            raw = raw_input_scores(splits, cfg)
            stats = log_mel_statistics_scores(splits, cfg.eval.knn_k,
                                              cfg.eval.knn_temperature,
                                              cfg.eval.probe_max_iter)
            for key, value in {**{f"raw {k}": v for k, v in raw.items()},
                               **{f"stats {k}": v for k, v in stats.items()}}.items():
                scores.setdefault(key, []).append(value)
            print(corpus, seed, {k: round(v[-1], 3) for k, v in scores.items()}, flush=True)
        rows.append([corpus, f"`{recipe}`", sizes,
                     *(cell(scores.get(k, [])) for k in ("raw knn_acc", "raw probe_acc",
                                                         "stats knn_acc", "stats probe_acc"))])
    table = markdown_table(["data", "recipe", "train / test", "raw kNN", "raw probe",
                            "log-mel stats kNN", "log-mel stats probe"], rows)
    note = (f"No learning: kNN (k = 20, cosine, T = 0.07) and a logistic regression on the "
            f"flattened input, and for audio on per-band log-mel statistics (mean, std and "
            f"four segment means per band); the recipes' own splits (audio: speaker-"
            f"disjoint), mean ± std over seeds {args.seeds}. These are the bars every SSL "
            "run prints first and every comparison table lists as its first rows.")
    publish("Trivial baselines of the built-in data (benchmarks/data_baselines.py)", table,
            note, not args.no_append)


if __name__ == "__main__":
    main()
