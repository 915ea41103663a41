"""Build a run's data, SSL model and augmentation from its config.

The server and every client call the same builders with the same config and seed, so
a client's partition and the initial model are identical wherever they are built.
Results are cached per process: a simulation actor that hosts several clients
loads the corpus once and keeps one model instance, rather than rebuilding per round.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from avfed import models, ssl
from avfed.config import RunConfig
from avfed.data import partition
from avfed.data.catalog import ImageSplit, load_image_split
from avfed.data.transforms import image_view_augmentation
from avfed.ssl.base import SSLMethod


def _key(*parts: object) -> str:
    return json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True)


@lru_cache(maxsize=4)
def _load_split(key: str) -> ImageSplit:
    from avfed.config import DataConfig

    data_cfg, seed = json.loads(key)
    return load_image_split(DataConfig(**data_cfg), seed)


def image_split(cfg: RunConfig) -> ImageSplit:
    """The (train, test) split for ``cfg.data``, loaded once per process."""
    return _load_split(_key(cfg.data, cfg.seed))


def client_indices(cfg: RunConfig, partition_id: int, num_partitions: int) -> np.ndarray:
    """Indices into the train split that client ``partition_id`` holds."""
    return _client_parts(_key(cfg.data, cfg.seed, num_partitions))[partition_id]


@lru_cache(maxsize=4)
def _client_parts(key: str) -> list[np.ndarray]:
    from avfed.config import DataConfig

    data_cfg, seed, num_partitions = json.loads(key)
    cfg = DataConfig(**data_cfg)
    train, _ = _load_split(_key(cfg, seed))
    return partition_labels(cfg, train.labels, num_partitions, seed)


def partition_labels(
    cfg: object, labels: np.ndarray, num_partitions: int, seed: int
) -> list[np.ndarray]:
    params: dict[str, object] = {}
    kind = cfg.partitioner  # type: ignore[attr-defined]
    if kind in ("dirichlet", "quantity"):
        params["alpha"] = cfg.alpha  # type: ignore[attr-defined]
    if kind == "shards":
        params["classes_per_client"] = cfg.classes_per_client  # type: ignore[attr-defined]
    return partition.partition(kind, labels, num_partitions, seed, **params)


def build_method(cfg: RunConfig, in_chans: int) -> SSLMethod:
    """A fresh SSL model; seeded so that server and clients agree on the initial weights."""
    torch.manual_seed(cfg.seed)
    backbone = models.create(cfg.model.name, in_chans=in_chans, **cfg.model.args)
    return ssl.create(
        cfg.ssl.method,
        backbone,
        projection_dim=cfg.ssl.projection_dim,
        hidden_dim=cfg.ssl.hidden_dim,
        temperature=cfg.ssl.temperature,
    )


def build_augmentation(cfg: RunConfig, channels: int) -> nn.Module:
    return image_view_augmentation(cfg.augment, cfg.data.image_size, channels)
