"""FSSUAVL: one audio-visual model vs two separate models vs the supervised upper bound.

All federated variants use the same 10 clients (half image-only, half audio-only by
default), rounds, local epochs and seeds:

- **FSSUAVL**: one multi-modal backbone (a stem per modality, shared trunk and
  projector) trained on both kinds of clients with SimCLR, aggregated with FedAvg;
- **FSSUAVL + pairs**: the same with ``both``-modality clients that use the
  class-level pairing of the built-in digits as auxiliary information;
- **separate models**: an image-only run on the image clients and an audio-only run
  on the audio clients, each with the same architecture and budget;
- **supervised**: the same backbone trained centrally with labels (upper bound).

    python benchmarks/fssuavl.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import markdown_table, publish
from compare_runs import (
    Outcome,
    Variant,
    compare,
    reference_outcomes,
    save_bar_plot,
    score_rows,
    supervised_bound,
)

from avfed.config import load_config

KEYS = ["image_knn_acc", "image_probe_acc", "audio_knn_acc", "audio_probe_acc"]


def separate_models(recipe: str, seeds: list[int], extra: list[str], audio_source: str,
                    image_clients: int, audio_clients: int) -> list[dict[str, float]]:
    """Per seed, the image-only and the audio-only runs' scores, merged under modality keys."""
    image = Variant("image only", ["data.audio_source=null", f"fl.num_clients={image_clients}"])
    audio = Variant("audio only", [f"data.source={audio_source}", "data.audio_source=null",
                                   f"fl.num_clients={audio_clients}"])
    (img,) = compare(recipe, [image], seeds, extra)
    (aud,) = compare(recipe, [audio], seeds, extra)
    merged = []
    for i_scores, a_scores in zip(img.finals, aud.finals, strict=True):
        row = {f"image_{k}": v for k, v in i_scores.items()}
        row.update({f"audio_{k}": v for k, v in a_scores.items()})
        merged.append(row)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fssuavl_digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--supervised-epochs", type=int, default=30)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()
    extra = list(args.overrides)
    cfg = load_config(args.recipe, extra)
    n = cfg.fl.num_clients
    fractions = cfg.data.client_modalities
    image_clients = round(n * fractions.get("image", 0) / sum(fractions.values()))
    audio_clients = n - image_clients

    outcomes = compare(args.recipe, [
        Variant("FSSUAVL (one model)", []),
        Variant("FSSUAVL + pairs", ["data.client_modalities.image=0.3",
                                    "data.client_modalities.audio=0.3",
                                    "data.client_modalities.both=0.4",
                                    "ssl.cross_modal_weight=1.0"]),
    ], args.seeds, extra)
    separate = Outcome("separate models")
    separate.finals = separate_models(args.recipe, args.seeds, extra,
                                      cfg.data.audio_source or "noisy_spoken_digits",
                                      image_clients, audio_clients)
    separate.wall_s = [float("nan")]
    references = reference_outcomes(outcomes)
    if args.supervised_epochs > 0:
        references.append(supervised_bound(args.recipe, args.seeds, args.supervised_epochs,
                                           extra))
    rows = score_rows([*references, *outcomes, separate], KEYS)
    table = markdown_table(["model", "image kNN", "image probe", "audio kNN", "audio probe",
                            "wall s / run"], rows)
    note = (f"{n} clients ({image_clients} image-only, {audio_clients} audio-only; the "
            "'+ pairs' row uses 3/3/4 image/audio/both clients with the digit-class pairing "
            f"as auxiliary information), {cfg.fl.rounds} rounds × {cfg.train.local_epochs} "
            f"local epochs, seeds {args.seeds}; frozen-backbone scores on held-out digits "
            "(speaker-disjoint for audio). First rows, from the same runs: kNN / probe on the "
            "raw input (pixels; flattened log-mel), on per-band log-mel statistics (audio), "
            "and the random-init backbone; supervised = same backbone trained centrally with "
            f"labels for {args.supervised_epochs} epochs (its probe column is test accuracy).")
    plot = Path(__file__).resolve().parent / "plots" / "fssuavl.png"
    if save_bar_plot(plot, [*references, *outcomes, separate], KEYS,
                     f"{args.recipe}, seeds {args.seeds}"):
        note += f" Plot: `benchmarks/plots/{plot.name}`."
    publish("FSSUAVL vs separate models (benchmarks/fssuavl.py)", table, note,
            not args.no_append)


if __name__ == "__main__":
    main()
