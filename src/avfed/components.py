"""Build a run's data, SSL model and augmentation from its config.

The server and every client call the same builders with the same config and seed, so
a client's partition and the initial model are identical wherever they are built.
Results are cached per process: a simulation actor that hosts several clients
loads the corpus once and keeps one model instance, rather than rebuilding per round.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from avfed import models, ssl
from avfed.config import DataConfig, RunConfig
from avfed.data import partition
from avfed.data.catalog import ImageSplit, load_image_split
from avfed.data.transforms import image_view_augmentation
from avfed.ssl.base import SSLMethod

# Per-process caches keyed by the data settings: a simulation actor hosting several
# clients loads and partitions the corpus once.
_splits: dict[str, ImageSplit] = {}
_partitions: dict[str, list[np.ndarray]] = {}


def _data_key(cfg: RunConfig, *extra: int) -> str:
    return json.dumps([asdict(cfg.data), cfg.seed, *extra], sort_keys=True)


def image_split(cfg: RunConfig) -> ImageSplit:
    """The (train, test) split for ``cfg.data``, loaded once per process."""
    key = _data_key(cfg)
    if key not in _splits:
        _splits[key] = load_image_split(cfg.data, cfg.seed)
    return _splits[key]


def client_indices(cfg: RunConfig, partition_id: int, num_partitions: int) -> np.ndarray:
    """Indices into the train split that client ``partition_id`` holds."""
    key = _data_key(cfg, num_partitions)
    if key not in _partitions:
        train, _ = image_split(cfg)
        _partitions[key] = partition_labels(cfg.data, train.labels, num_partitions, cfg.seed)
    return _partitions[key][partition_id]


def partition_labels(
    cfg: DataConfig, labels: np.ndarray, num_partitions: int, seed: int
) -> list[np.ndarray]:
    """Apply the recipe's partitioner, passing only the parameters it takes."""
    params: dict[str, float] = {}
    if cfg.partitioner in ("dirichlet", "quantity"):
        params["alpha"] = cfg.alpha
    if cfg.partitioner == "shards":
        params["classes_per_client"] = cfg.classes_per_client
    return partition.partition(cfg.partitioner, labels, num_partitions, seed, **params)


def build_method(cfg: RunConfig, in_chans: int) -> SSLMethod:
    """A fresh SSL model; seeded so that server and clients agree on the initial weights."""
    torch.manual_seed(cfg.seed)
    backbone = models.create(cfg.model.name, in_chans=in_chans, **cfg.model.args)
    return ssl.create(
        cfg.ssl.method,
        backbone,
        projection_dim=cfg.ssl.projection_dim,
        hidden_dim=cfg.ssl.hidden_dim,
        **cfg.ssl.args,
    )


def build_augmentation(cfg: RunConfig, channels: int) -> nn.Module:
    return image_view_augmentation(cfg.augment, cfg.data.image_size, channels)
