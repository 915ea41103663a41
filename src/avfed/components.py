"""Build a run's data, SSL model and augmentations from its config.

The server and every client call the same builders with the same config and seed, so
a client's partition and the initial model are identical wherever they are built.
Results are cached per process: a simulation actor that hosts several clients
loads the corpus once and keeps one model instance, rather than rebuilding per round.

A run has one modality (``data.source``) or two (an image ``data.source`` plus a
``data.audio_source``); everything below is keyed by modality so both cases share
one code path.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from avfed import models, ssl
from avfed.config import ConfigError, DataConfig, RunConfig
from avfed.data import partition
from avfed.data.catalog import MODALITIES, ImageSplit, load_split, source_modality
from avfed.data.transforms import image_view_augmentation
from avfed.ssl.base import SSLMethod

T = TypeVar("T")

# Per-process caches keyed by the data settings: a simulation actor hosting several
# clients loads and partitions the corpus once.
_splits: dict[str, dict[str, ImageSplit]] = {}
_partitions: dict[str, list[dict[str, np.ndarray]]] = {}


def _data_key(cfg: RunConfig, *extra: int) -> str:
    return json.dumps([asdict(cfg.data), cfg.seed, *extra], sort_keys=True)


def run_modalities(cfg: RunConfig) -> list[str]:
    """The modalities of this run, primary source first."""
    first = source_modality(cfg.data.source)
    return [first, "audio"] if cfg.data.audio_source else [first]


def data_splits(cfg: RunConfig) -> dict[str, ImageSplit]:
    """``{modality: (train, test)}`` for the run's sources, loaded once per process."""
    key = _data_key(cfg)
    if key not in _splits:
        modalities = run_modalities(cfg)
        splits = {modalities[0]: load_split(cfg.data, cfg.seed)}
        if cfg.data.audio_source:
            splits["audio"] = load_split(cfg.data, cfg.seed, source=cfg.data.audio_source,
                                         root=cfg.data.audio_root)
        _splits[key] = splits
    return _splits[key]


def client_modalities(cfg: RunConfig, num_partitions: int) -> list[tuple[str, ...]]:
    """Which modalities each client holds.

    With two sources, ``data.client_modalities`` gives the fractions of image-only,
    audio-only and both-modality clients (largest-remainder rounding; image-only
    clients get the lowest partition ids). A both-modality client's image and audio
    are unpaired: they are drawn independently.
    """
    modalities = run_modalities(cfg)
    if len(modalities) == 1:
        return [tuple(modalities)] * num_partitions
    kinds = [("image",), ("audio",), ("image", "audio")]
    fractions = np.array([cfg.data.client_modalities.get(k, 0.0)
                          for k in ("image", "audio", "both")], dtype=float)
    raw = fractions / fractions.sum() * num_partitions
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: num_partitions - counts.sum()]:
        counts[i] += 1
    return [kind for kind, count in zip(kinds, counts, strict=True) for _ in range(count)]


def client_data(cfg: RunConfig, partition_id: int, num_partitions: int) -> dict[str, np.ndarray]:
    """``{modality: indices into that modality's train split}`` for one client."""
    key = _data_key(cfg, num_partitions)
    if key not in _partitions:
        splits = data_splits(cfg)
        holders = client_modalities(cfg, num_partitions)
        per_client: list[dict[str, np.ndarray]] = [{} for _ in range(num_partitions)]
        for modality, (train, _) in splits.items():
            clients = [c for c in range(num_partitions) if modality in holders[c]]
            if not clients:
                continue
            # seeded by modality, not position: an audio-only run splits its audio exactly
            # as the audio half of an audio-visual run with the same audio clients does
            seed = cfg.seed + MODALITIES.index(modality)
            ids = train.labels
            if cfg.data.partitioner == "by_group":
                if train.groups is None:
                    raise ValueError(f"data.partitioner=by_group needs grouped data (speakers); "
                                     f"the {modality} source has no groups")
                ids = train.groups
            parts = partition_labels(cfg.data, ids, len(clients), seed)
            for client, part in zip(clients, parts, strict=True):
                per_client[client][modality] = part
        _partitions[key] = per_client
    return _partitions[key][partition_id]


def client_indices(cfg: RunConfig, partition_id: int, num_partitions: int) -> np.ndarray:
    """Indices of a single-modality run's client ``partition_id``."""
    (indices,) = client_data(cfg, partition_id, num_partitions).values()
    return indices


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


def modality_channels(cfg: RunConfig) -> dict[str, int]:
    return {m: int(train.images.shape[1]) for m, (train, _) in data_splits(cfg).items()}


def build_backbone(cfg: RunConfig, channels: dict[str, int]) -> nn.Module:
    """The recipe's backbone; multi-modal backbones get one stem per run modality."""
    factory = models.model_registry.get(cfg.model.name)
    kwargs = dict(cfg.model.args)
    parameters = inspect.signature(factory).parameters
    if "scales" in parameters and cfg.train.repopt_scales:
        # a RepOpt target starts from the same scales its optimizer multiplies by
        kwargs.setdefault("scales", cfg.train.repopt_scales)
    if "modalities" in parameters:
        kwargs.setdefault("modalities", channels)
    elif len(channels) > 1:
        raise ValueError(
            f"model.name={cfg.model.name} takes one modality, but this run has "
            f"{', '.join(channels)}; use a multi-modal backbone such as mm_resnet18_cifar"
        )
    return factory(in_chans=next(iter(channels.values())), **kwargs)


def build_method(cfg: RunConfig, channels: dict[str, int] | int | None = None) -> SSLMethod:
    """A fresh SSL model; seeded so that server and clients agree on the initial weights."""
    if channels is None:
        channels = modality_channels(cfg)
    elif isinstance(channels, int):
        channels = {run_modalities(cfg)[0]: channels}
    torch.manual_seed(cfg.seed)
    backbone = _configured("model.args", cfg.model.name, build_backbone, cfg, channels)
    return _configured("ssl.args", cfg.ssl.method, ssl.create, cfg.ssl.method, backbone,
                       projection_dim=cfg.ssl.projection_dim, hidden_dim=cfg.ssl.hidden_dim,
                       **cfg.ssl.args)


def _configured(field: str, name: str, factory: Callable[..., T], *args: Any,
                **kwargs: Any) -> T:
    """Call ``factory``; a wrong keyword becomes a :class:`ConfigError` naming ``field``."""
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        if "argument" not in str(err):
            raise
        raise ConfigError(f"invalid recipe field '{field}' for {name}: {err}") from None


def build_augmentation(cfg: RunConfig, channels: int, modality: str = "image") -> nn.Module:
    """One random view per call, for the given modality's inputs."""
    if modality == "audio":
        from avfed.audio.augment import log_mel_view_augmentation

        return log_mel_view_augmentation(**cfg.augment.audio)
    return image_view_augmentation(cfg.augment, cfg.data.image_size, channels)


def build_augmentations(cfg: RunConfig) -> dict[str, nn.Module]:
    return {m: build_augmentation(cfg, c, m) for m, c in modality_channels(cfg).items()}
