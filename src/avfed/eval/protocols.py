"""Frozen-feature evaluation of an SSL model: kNN, linear probe, retrieval, and the
label-free RankMe score used to select a checkpoint without labels.

Features come from the method's ``embed`` (the backbone alone: the projector is
discarded, as in every SSL protocol). Round 0 evaluates the initial weights, which
makes it the randomly initialised baseline the trained model is compared with. A
run with two modalities is evaluated on each, with the modality's name prefixed to
every score (``image_knn_acc``, ``audio_probe_acc``); a single-modality run keeps
the bare names.

The raw-input scores, and round 0's (evaluated inside
:func:`avfed.eval.cache.initial_round`), are remembered between runs on the same data
and weights (:mod:`avfed.eval.cache`; ``eval.cache=false`` switches that off).
"""

from __future__ import annotations

import torch

from avfed.config import RunConfig
from avfed.data.types import ImageSet
from avfed.eval import extract_features, knn_accuracy, linear_probe_accuracy
from avfed.eval.cache import (
    data_digest,
    in_initial_round,
    model_code_digest,
    remembered,
    state_digest,
)
from avfed.eval.rankme import rankme
from avfed.ssl.base import SSLMethod


def evaluate_backbone(
    method: SSLMethod, train: ImageSet, test: ImageSet, cfg: RunConfig,
    modality: str | None = None,
) -> dict[str, float]:
    """kNN and linear-probe accuracy (plus retrieval when ``eval.retrieval``); round 0's
    scores come from the cache when these weights were evaluated on this data before."""
    if not in_initial_round():
        return _evaluate_backbone(method, train, test, cfg, modality)

    def fields() -> dict:
        return {"method": f"{type(method).__module__}.{type(method).__qualname__}",
                "modality": modality, "device": cfg.device,
                "state": state_digest(method.state_dict()),
                "model_code": model_code_digest(method),
                "data": data_digest({"eval": (train, test)}),
                "eval": _eval_settings(cfg), "batch_size": cfg.eval.batch_size,
                "retrieval": cfg.eval.retrieval, "precision": cfg.train.precision,
                "memory_format": cfg.train.memory_format}

    return remembered("initial_model", fields,
                      lambda: _evaluate_backbone(method, train, test, cfg, modality),
                      cfg.eval.cache)


def _evaluate_backbone(method: SSLMethod, train: ImageSet, test: ImageSet, cfg: RunConfig,
                       modality: str | None) -> dict[str, float]:
    bs, device = cfg.eval.batch_size, cfg.device

    def embed(x: torch.Tensor) -> torch.Tensor:
        return method.embed(x, modality)

    train_feats = extract_features(method, train.images, bs, device, forward=embed)
    test_feats = extract_features(method, test.images, bs, device, forward=embed)
    scores = {
        "knn_acc": knn_accuracy(train_feats, train.labels, test_feats, test.labels,
                                cfg.eval.knn_k, cfg.eval.knn_temperature),
        "probe_acc": linear_probe_accuracy(train_feats, train.labels, test_feats,
                                           test.labels, cfg.eval.probe_max_iter),
        "rankme": rankme(train_feats),  # label-free: used to select a checkpoint
    }
    if cfg.eval.retrieval:
        from avfed.eval.retrieval import retrieval_metrics

        scores.update(retrieval_metrics(test_feats, test.labels, train_feats,
                                        train.labels).as_dict())
    return scores


def raw_input_scores(splits: dict[str, tuple[ImageSet, ImageSet]],
                     cfg: RunConfig) -> dict[str, float]:
    """kNN and linear probe on the flattened inputs themselves: the trivial baseline a
    learned representation has to beat before it can claim anything (remembered
    between runs on the same data, :mod:`avfed.eval.cache`)."""
    return remembered("raw_input",
                      lambda: {"data": data_digest(splits), "eval": _eval_settings(cfg)},
                      lambda: _raw_input_scores(splits, cfg), cfg.eval.cache)


def _eval_settings(cfg: RunConfig) -> dict:
    """The settings every kNN / probe score depends on."""
    return {"knn_k": cfg.eval.knn_k, "knn_temperature": cfg.eval.knn_temperature,
            "probe_max_iter": cfg.eval.probe_max_iter}


def _raw_input_scores(splits: dict[str, tuple[ImageSet, ImageSet]],
                      cfg: RunConfig) -> dict[str, float]:
    scores: dict[str, float] = {}
    for modality, (train, test) in splits.items():
        train_x, test_x = train.images.flatten(1).float(), test.images.flatten(1).float()
        prefix = f"{modality}_" if len(splits) > 1 else ""
        scores[prefix + "knn_acc"] = knn_accuracy(train_x, train.labels, test_x, test.labels,
                                                  cfg.eval.knn_k, cfg.eval.knn_temperature)
        scores[prefix + "probe_acc"] = linear_probe_accuracy(
            train_x, train.labels, test_x, test.labels, cfg.eval.probe_max_iter)
    return scores


def evaluate_all(method: SSLMethod, splits: dict[str, tuple[ImageSet, ImageSet]],
                 cfg: RunConfig) -> dict[str, float]:
    """Scores for every modality of the run (prefixed when there are several)."""
    scores: dict[str, float] = {}
    for modality, (train, test) in splits.items():
        result = evaluate_backbone(method, train, test, cfg, modality)
        prefix = f"{modality}_" if len(splits) > 1 else ""
        scores.update({prefix + k: v for k, v in result.items()})
    return scores
