"""Central evaluation of the global model on the server: kNN and linear probe.

Features come from the backbone alone (the projector is discarded, as in every SSL
protocol). Round 0 evaluates the initial weights, which makes it the randomly
initialised baseline the trained model is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from avfed.config import RunConfig
from avfed.data.types import ImageSet
from avfed.eval import extract_features, knn_accuracy, linear_probe_accuracy
from avfed.ssl.base import SSLMethod


@dataclass
class EvalResult:
    knn_acc: float
    probe_acc: float
    seconds: float


def evaluate_backbone(
    method: SSLMethod, train: ImageSet, test: ImageSet, cfg: RunConfig
) -> EvalResult:
    start = time.perf_counter()
    bs, device = cfg.eval.batch_size, cfg.device
    train_feats = extract_features(method.backbone, train.images, bs, device)
    test_feats = extract_features(method.backbone, test.images, bs, device)
    knn = knn_accuracy(train_feats, train.labels, test_feats, test.labels,
                       cfg.eval.knn_k, cfg.eval.knn_temperature)
    probe = linear_probe_accuracy(train_feats, train.labels, test_feats, test.labels,
                                  cfg.eval.probe_max_iter)
    return EvalResult(knn, probe, time.perf_counter() - start)
