"""The one place that builds a run: data, every client's partition, task, optimizer,
strategy and client rule, from a validated config.

``build_run(cfg)`` resolves every name in the recipe against its registry, checks every
component's arguments, loads and partitions the data and builds the task, the optimizer
and the strategy once. The CLI (and the ServerApp under ``flwr run``) calls it before
Ray or any SuperNode is involved, so whatever a client would trip over is an error at
start-up, with the field to fix, and no empty run folder is left behind. Clients call
the same function (without the strategy) and cache the result per process, so every
node derives the same partitions and initial weights from the same config and seed.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.serverapp.strategy import Strategy

from avfed import models, ssl
from avfed.config import ConfigError, RunConfig
from avfed.data.catalog import MODALITIES, ImageSplit, data_sources, load_split, source_modality
from avfed.data.partition import partitioner_registry
from avfed.fl import strategies
from avfed.fl.client_merge import rule_name
from avfed.fl.strategies.base import ScreenedStrategyMixin
from avfed.optimizers import make_optimizer, optimizer_registry
from avfed.registry import check_arguments, schema_from_signature
from avfed.tasks import ClientData, Task, task_registry
from avfed.tasks.parts import ResolvedArgs, RunParts

# Smallest client a task can train on: contrastive losses need a pair, BatchNorm a batch.
MIN_CLIENT_EXAMPLES = 2


def import_plugins(modules: list[str]) -> None:
    """Import the recipe's ``plugins`` so their registrations exist.

    The working directory is importable (as for ``python -m``), so a ``my_plugins.py``
    beside the recipe works without packaging it.
    """
    cwd = os.getcwd()
    if modules and cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(
                f"invalid recipe field 'plugins': cannot import '{name}' ({err}); the module "
                "must be importable from the working directory or the installed packages"
            ) from None


def resolve_components(cfg: RunConfig) -> ResolvedArgs:
    """Check every name and argument of ``cfg`` against the registries (no data, no model)."""
    import_plugins(cfg.plugins)
    data_sources.check_name(cfg.data.source, "data.source")
    if cfg.data.audio_source is not None:
        data_sources.check_name(cfg.data.audio_source, "data.audio_source")
    partitioner_registry.check_name(cfg.data.partitioner, "data.partitioner")
    models.model_registry.check_name(cfg.model.name, "model.name")
    ssl.method_registry.check_name(cfg.ssl.method, "ssl.method")
    strategies.strategy_registry.check_name(cfg.fl.strategy, "fl.strategy")
    optimizer_registry.check_name(cfg.train.optimizer, "train.optimizer")
    task_registry.check_name(cfg.task.name, "task.name")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"invalid recipe field 'device': {cfg.device} was asked for, but this "
                          "torch build sees no CUDA device; use device=cpu")
    from avfed.audio.augment import log_mel_view_augmentation

    audio_args = check_arguments(schema_from_signature(log_mel_view_augmentation),
                                 cfg.augment.audio, "augment.audio", "the log-mel augmentation")
    _check_modalities(cfg)
    return ResolvedArgs(
        model=models.model_registry.check_args(cfg.model.name, cfg.model.args, "model.args"),
        ssl=ssl.method_registry.check_args(cfg.ssl.method, cfg.ssl.args, "ssl.args"),
        strategy=strategies.strategy_registry.check_args(cfg.fl.strategy, cfg.fl.strategy_args,
                                                         "fl.strategy_args"),
        task=task_registry.check_args(cfg.task.name, cfg.task.args, "task.args"),
        audio_augment=audio_args,
    )


def _check_modalities(cfg: RunConfig) -> None:
    multimodal = models.model_registry.meta(cfg.model.name, "multimodal", False)
    if cfg.data.audio_source is None:
        return
    if source_modality(cfg.data.source) != "image":
        raise ConfigError("invalid recipe field 'data.source': with data.audio_source set, "
                          f"data.source must be an image source, got '{cfg.data.source}'")
    if source_modality(cfg.data.audio_source) != "audio":
        raise ConfigError("invalid recipe field 'data.audio_source': "
                          f"'{cfg.data.audio_source}' is not an audio source")
    if not multimodal:
        raise ConfigError(
            f"invalid recipe field 'model.name': {cfg.model.name} takes one modality, but this "
            "run has image and audio; use a multi-modal backbone such as mm_resnet18_cifar")


def run_modalities(cfg: RunConfig) -> list[str]:
    """The modalities of this run, primary source first."""
    first = source_modality(cfg.data.source)
    return [first, "audio"] if cfg.data.audio_source else [first]


def load_data(cfg: RunConfig) -> dict[str, ImageSplit]:
    """``{modality: (train, test)}`` for the run's sources, checked for evaluation."""
    modalities = run_modalities(cfg)
    splits = {modalities[0]: load_split(cfg.data, cfg.seed)}
    if cfg.data.audio_source:
        splits["audio"] = load_split(cfg.data, cfg.seed, source=cfg.data.audio_source,
                                     root=cfg.data.audio_root)
    for modality, (train, test) in splits.items():
        source = cfg.data.source if modality == modalities[0] else cfg.data.audio_source
        if len(train) < MIN_CLIENT_EXAMPLES or len(test) == 0:
            raise ConfigError(f"data.source={source}: {len(train)} training and {len(test)} "
                              "test examples after the split; need at least "
                              f"{MIN_CLIENT_EXAMPLES} and 1")
        if len(np.unique(train.labels)) < 2:
            raise ConfigError(f"data.source={source} has a single class in its training "
                              "split; evaluation (kNN, linear probe) needs at least 2")
    return splits


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


def partition_clients(cfg: RunConfig, splits: dict[str, ImageSplit],
                      num_partitions: int) -> list[dict[str, np.ndarray]]:
    """``[{modality: indices into that modality's train split}]``, one per client."""
    holders = client_modalities(cfg, num_partitions)
    per_client: list[dict[str, np.ndarray]] = [{} for _ in range(num_partitions)]
    grouped = partitioner_registry.meta(cfg.data.partitioner, "by") == "groups"
    params = {"alpha": cfg.data.alpha, "classes_per_client": cfg.data.classes_per_client}
    for modality, (train, _) in splits.items():
        clients = [c for c in range(num_partitions) if modality in holders[c]]
        if not clients:
            continue
        ids = train.labels
        if grouped:
            if train.groups is None:
                raise ConfigError(
                    f"invalid recipe field 'data.partitioner': {cfg.data.partitioner} deals "
                    f"out whole groups (speakers), but the {modality} data has no groups; "
                    "use dirichlet, iid, shards or quantity")
            ids = train.groups
        units = len(np.unique(ids)) if grouped else len(ids) // MIN_CLIENT_EXAMPLES
        if len(clients) > units:
            what = "groups" if grouped else f"pairs of {modality} training examples"
            raise ConfigError(
                f"invalid recipe field 'fl.num_clients': {len(clients)} clients hold "
                f"{modality}, but there are only {units} {what}; use fewer clients")
        # seeded by modality, not position: an audio-only run splits its audio exactly as
        # the audio half of an audio-visual run with the same audio clients does
        seed = cfg.seed + MODALITIES.index(modality)
        factory = partitioner_registry.get(cfg.data.partitioner)
        try:
            parts = factory(np.asarray(ids), len(clients), seed, params)
        except ValueError as err:
            raise ConfigError(f"invalid recipe field 'data.partitioner': {err}") from None
        for client, part in zip(clients, parts, strict=True):
            if len(part) < MIN_CLIENT_EXAMPLES:
                raise ConfigError(
                    f"data.partitioner={cfg.data.partitioner} leaves client {client} with "
                    f"{len(part)} {modality} examples (at least {MIN_CLIENT_EXAMPLES} are "
                    "needed); use fewer clients or a milder split")
            per_client[client][modality] = part
    return per_client


@dataclass
class BuiltRun:
    """A run ready to start: its data, partitions, task and (on the server) strategy."""

    cfg: RunConfig
    splits: dict[str, ImageSplit]
    task: Task
    initial_state: dict[str, torch.Tensor]
    strategy: Strategy | None = None
    _partitions: dict[int, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    @property
    def has_private_state(self) -> bool:
        """Whether clients hold tensors they never share (and must keep between rounds)."""
        return set(self.task.shared_state()) != set(self.initial_state)

    def partitions(self, num_partitions: int | None = None) -> list[dict[str, np.ndarray]]:
        num = num_partitions or self.cfg.fl.num_clients
        if num not in self._partitions:
            self._partitions[num] = partition_clients(self.cfg, self.splits, num)
        return self._partitions[num]

    def client_data(self, partition_id: int, num_partitions: int | None = None) -> ClientData:
        indices = self.partitions(num_partitions)[partition_id]
        return self._data(partition_id, indices)

    def pooled_data(self) -> ClientData:
        """All training data as one client (centralised runs)."""
        return self._data(0, {m: np.arange(len(train)) for m, (train, _) in self.splits.items()})

    def _data(self, client_id: int, indices: dict[str, np.ndarray]) -> ClientData:
        return ClientData(
            client_id=client_id,
            inputs={m: self.splits[m][0].images[torch.from_numpy(idx)]
                    for m, idx in indices.items()},
            labels={m: self.splits[m][0].labels[idx] for m, idx in indices.items()},
            indices=dict(indices),
        )

    @property
    def skipped_files(self) -> list[str]:
        return [str(s.path) for train, _ in self.splits.values() for s in train.skipped]


def build_run(cfg: RunConfig, *, with_strategy: bool = True) -> BuiltRun:
    """Build everything ``cfg`` describes, or raise :class:`ConfigError` naming the field.

    ``with_strategy=False`` is the client's build: the same data, partitions and task,
    without the server's strategy.
    """
    resolved = resolve_components(cfg)
    splits = load_data(cfg)
    parts = RunParts(cfg, splits, resolved)
    built_partitions = partition_clients(cfg, splits, cfg.fl.num_clients)
    task = task_registry.get(cfg.task.name)(parts, **resolved.task)
    initial = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    make_optimizer(task.model, cfg.train)  # a model the optimizer cannot train fails here
    strategy = None
    if with_strategy:
        strategy = strategies.create(
            cfg.fl.strategy,
            fraction_train=cfg.fl.fraction_train,
            fraction_evaluate=0.0,  # evaluation is central, on held-out data
            min_train_nodes=max(cfg.fl.min_clients,
                                round(cfg.fl.fraction_train * cfg.fl.num_clients)),
            min_available_nodes=cfg.fl.num_clients,
            **resolved.strategy,
        )
        if not isinstance(strategy, ScreenedStrategyMixin):
            raise ConfigError(
                f"invalid recipe field 'fl.strategy': {cfg.fl.strategy} builds a "
                f"{type(strategy).__name__}, which does not screen client updates; put "
                "avfed.fl.strategies.base.ScreenedStrategyMixin first in its bases")
        strategy.min_accepted = cfg.fl.min_clients
        try:
            rule_name(strategy.client_config(1))
        except KeyError as err:
            raise ConfigError(f"invalid recipe field 'fl.strategy': {err.args[0]}") from None
    built = BuiltRun(cfg, splits, task, initial, strategy)
    built._partitions[cfg.fl.num_clients] = built_partitions
    return built


