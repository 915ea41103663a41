"""Trivial baselines: what the raw input scores before any learning.

A learned representation only claims something when it beats these on the same split:
kNN and a linear probe on the flattened input (pixels, or the standardised log-mel:
``avfed.eval.protocols.raw_input_scores``) and, for audio, on the classic hand-made
summary of a log-mel, per-band statistics over time (defined here). Flattened log-mels
are a weak baseline for speech, because a word shifted by a few frames no longer lines
up; the statistics are not fooled by that, so they are the bar an audio model must clear.
"""

from __future__ import annotations

import torch

from avfed.data.types import ImageSet
from avfed.eval.cache import data_digest, remembered
from avfed.eval.knn import knn_accuracy
from avfed.eval.linear_probe import linear_probe_accuracy

SEGMENTS = 4


def log_mel_statistics(log_mels: torch.Tensor, segments: int = SEGMENTS) -> torch.Tensor:
    """``[N, 1, mels, frames]`` → ``[N, mels · (2 + segments)]``: each band's mean and
    standard deviation over time and its mean over ``segments`` equal stretches of time
    (a coarse temporal envelope, which is what tells "six" from "seven")."""
    x = log_mels.float().flatten(1, -2)  # [N, mels, frames]
    chunks = torch.tensor_split(x, segments, dim=-1)
    parts = [x.mean(-1), x.std(-1), *(c.mean(-1) for c in chunks)]
    return torch.cat(parts, dim=1)


def log_mel_statistics_scores(splits: dict[str, tuple[ImageSet, ImageSet]], k: int = 20,
                               temperature: float = 0.07, max_iter: int = 1000,
                               cache: bool = False) -> dict[str, float]:
    """kNN and linear probe on :func:`log_mel_statistics` for every audio modality of a
    run (score names prefixed by the modality when the run has several, as in the
    run's evaluation); empty when the run has no audio. With ``cache``, remembered
    between runs on the same data (:mod:`avfed.eval.cache`)."""
    if "audio" not in splits:
        return {}
    settings = {"knn_k": k, "knn_temperature": temperature, "probe_max_iter": max_iter,
                "segments": SEGMENTS, "several": len(splits) > 1}
    return remembered(
        "log_mel_statistics",
        lambda: {"data": data_digest({"audio": splits["audio"]}), "eval": settings},
        lambda: _log_mel_statistics_scores(splits, k, temperature, max_iter), cache)


def _log_mel_statistics_scores(splits: dict[str, tuple[ImageSet, ImageSet]], k: int,
                               temperature: float, max_iter: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    for modality, (train, test) in splits.items():
        if modality != "audio":
            continue
        prefix = f"{modality}_" if len(splits) > 1 else ""
        train_s, test_s = log_mel_statistics(train.images), log_mel_statistics(test.images)
        scores[prefix + "knn_acc"] = knn_accuracy(train_s, train.labels, test_s, test.labels,
                                                  k, temperature)
        scores[prefix + "probe_acc"] = linear_probe_accuracy(train_s, train.labels, test_s,
                                                             test.labels, max_iter)
    return scores
