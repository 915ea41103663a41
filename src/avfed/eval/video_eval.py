"""Frozen-feature evaluation of a video backbone: retrieval, kNN and linear probe.

A video is described by the mean of its backbone features over ``num_clips`` clips at
evenly spaced starts (the multi-clip protocol of VCOP and FedVSSL, which the paper
averages over ten clips; a stored moving-digit video holds a few). Retrieval then lets
the test videos query the training videos by cosine similarity and reports recall@k for
k = 1, 5, 10, 20, 50 (a hit when any of the k nearest shares the query's class; a k
larger than the gallery is left out, never clipped).

The raw-input baseline runs the same protocol on the clips' pixels (spatially pooled
to at most 16×16, so that the probe fits in seconds): a learned representation must
beat it before it says anything about motion.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avfed.eval import knn_accuracy, linear_probe_accuracy
from avfed.eval.rankme import rankme
from avfed.eval.retrieval import retrieval_metrics
from avfed.ssl.video.clips import gather_clips, uniform_starts
from avfed.video.augment import center_resize

RECALL_KS = (1, 5, 10, 20, 50)
RAW_POOL = 16  # side the raw-pixel baseline pools frames to


def clip_starts(num_frames: int, clip_len: int, num_clips: int) -> list[int]:
    return uniform_starts(num_frames, clip_len, num_clips)


@torch.no_grad()
def video_features(backbone: nn.Module, videos: torch.Tensor, clip_len: int, num_clips: int,
                   size: int, batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """``[N, D]``: each video's backbone features averaged over its evaluation clips
    (eval mode; the module's mode is restored)."""
    starts = clip_starts(videos.shape[2], clip_len, num_clips)
    was_training = backbone.training
    backbone.eval()
    chunks = []
    try:
        for lo in range(0, len(videos), batch_size):
            batch = videos[lo : lo + batch_size]
            feats = [backbone(center_resize(gather_clips(
                batch, torch.full((len(batch),), s), clip_len), size).to(device)).float().cpu()
                for s in starts]
            chunks.append(torch.stack(feats).mean(0))
    finally:
        backbone.train(was_training)
    return torch.cat(chunks)


def raw_video_features(videos: torch.Tensor, clip_len: int, num_clips: int) -> torch.Tensor:
    """Flattened clip pixels (frames pooled to at most 16×16), averaged over the clips."""
    starts = clip_starts(videos.shape[2], clip_len, num_clips)
    pooled = []
    for s in starts:
        clip = center_resize(gather_clips(videos, torch.full((len(videos),), s), clip_len),
                             videos.shape[-1])
        b, c, t, h, w = clip.shape
        side = min(RAW_POOL, h)
        frames = F.adaptive_avg_pool2d(clip.reshape(b, c * t, h, w), side)
        pooled.append(frames.flatten(1))
    return torch.stack(pooled).mean(0)


def frozen_scores(train_feats: torch.Tensor, train_labels: np.ndarray,
                  test_feats: torch.Tensor, test_labels: np.ndarray, *, knn_k: int = 20,
                  knn_temperature: float = 0.07, probe_max_iter: int = 1000,
                  ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """kNN and probe accuracy, recall@k (test queries, train gallery) and mAP."""
    usable = tuple(k for k in ks if k <= len(train_feats))
    scores = {
        "knn_acc": knn_accuracy(train_feats, train_labels, test_feats, test_labels, knn_k,
                                knn_temperature),
        "probe_acc": linear_probe_accuracy(train_feats, train_labels, test_feats, test_labels,
                                           probe_max_iter),
    }
    scores.update(retrieval_metrics(test_feats, test_labels, train_feats, train_labels,
                                    ks=usable).as_dict())
    return scores


def evaluate_video_backbone(backbone: nn.Module, train_videos: torch.Tensor,
                            train_labels: np.ndarray, test_videos: torch.Tensor,
                            test_labels: np.ndarray, *, clip_len: int, num_clips: int,
                            size: int, batch_size: int = 64, device: str = "cpu",
                            knn_k: int = 20, knn_temperature: float = 0.07,
                            probe_max_iter: int = 1000) -> dict[str, float]:
    """Every frozen-feature score of ``backbone``, plus RankMe of the training features."""
    train_feats = video_features(backbone, train_videos, clip_len, num_clips, size,
                                 batch_size, device)
    test_feats = video_features(backbone, test_videos, clip_len, num_clips, size, batch_size,
                                device)
    scores = frozen_scores(train_feats, train_labels, test_feats, test_labels, knn_k=knn_k,
                           knn_temperature=knn_temperature, probe_max_iter=probe_max_iter)
    scores["rankme"] = rankme(train_feats)
    return scores


def raw_input_video_scores(train_videos: torch.Tensor, train_labels: np.ndarray,
                           test_videos: torch.Tensor, test_labels: np.ndarray, *,
                           clip_len: int, num_clips: int, knn_k: int = 20,
                           knn_temperature: float = 0.07,
                           probe_max_iter: int = 1000) -> dict[str, float]:
    """The same scores on raw pixels: the trivial baseline."""
    return frozen_scores(raw_video_features(train_videos, clip_len, num_clips), train_labels,
                         raw_video_features(test_videos, clip_len, num_clips), test_labels,
                         knn_k=knn_k, knn_temperature=knn_temperature,
                         probe_max_iter=probe_max_iter)
