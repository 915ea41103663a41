"""The one place that builds a run: data, every client's partition, task, optimizer,
strategy and client rule, from a validated config.

``build_run(cfg)`` resolves every name in the recipe against its registry, checks every
component's arguments, loads and partitions the data and builds the task, the optimizer
and the strategy once. The CLI (and the ServerApp under ``flwr run``) calls it before
Ray or any SuperNode is involved, so whatever a client would trip over is an error at
start-up, with the field to fix, and no empty run folder is left behind. Clients call
the same function (without the strategy) and cache the result per process, so every
node derives the same partitions and initial weights from the same config and seed.
With ``fl.federated_eval`` the held-out split is dealt out among the clients too
(:func:`partition_test_clients`), for the clients to score the global model on.
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
from avfed.config import ConfigError, RunConfig, train_nodes_per_round
from avfed.data.catalog import MODALITIES, ImageSplit, data_sources, load_split, source_modality
from avfed.data.partition import iid, partitioner_registry
from avfed.fl import strategies
from avfed.fl.client_merge import rule_name
from avfed.fl.strategies.base import ScreenedStrategyMixin
from avfed.optimizers import make_optimizer, optimizer_registry
from avfed.registry import check_arguments, schema_from_signature
from avfed.tasks import ClientData, Task, task_registry
from avfed.tasks.parts import ResolvedArgs, RunParts

# Smallest client a task can train on: contrastive losses need a pair, BatchNorm a batch.
MIN_CLIENT_EXAMPLES = 2
# Added to the training partition's seed when the held-out split is dealt out, so the
# two splits are drawn independently (and reproducibly).
TEST_PARTITION_SEED_OFFSET = 7919


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
    if source_modality(cfg.data.source) == "video" and not task_registry.meta(
            cfg.task.name, "video", False):
        video_tasks = [n for n in task_registry.names() if task_registry.meta(n, "video", False)]
        raise ConfigError(
            f"invalid recipe field 'task.name': data.source={cfg.data.source} holds video "
            f"clips, which the {cfg.task.name} task does not train on; use a video task "
            f"({', '.join(video_tasks)})")
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


def partition_test_clients(cfg: RunConfig, splits: dict[str, ImageSplit], num_partitions: int
                           ) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """``[{modality: indices into that modality's test split}]`` per client, and notes.

    The held-out split is dealt out by the recipe's partitioner among the same clients
    as the training split, with its own seed. When the partitioner cannot split it (it
    is smaller: too few examples or groups for the clients), it is dealt out uniformly
    at random instead, and clients beyond its size get none of it; the notes say so. A
    client holding no held-out example is skipped when the clients evaluate.
    """
    holders = client_modalities(cfg, num_partitions)
    per_client: list[dict[str, np.ndarray]] = [{} for _ in range(num_partitions)]
    notes: list[str] = []
    grouped = partitioner_registry.meta(cfg.data.partitioner, "by") == "groups"
    params = {"alpha": cfg.data.alpha, "classes_per_client": cfg.data.classes_per_client}
    factory = partitioner_registry.get(cfg.data.partitioner)
    for modality, (_, test) in splits.items():
        clients = [c for c in range(num_partitions) if modality in holders[c]]
        if not clients:
            continue
        seed = cfg.seed + MODALITIES.index(modality) + TEST_PARTITION_SEED_OFFSET
        try:
            ids = test.groups if grouped else test.labels
            if ids is None:
                raise ValueError(f"the {modality} test split has no groups")
            parts = factory(np.asarray(ids), len(clients), seed, params)
        except ValueError as err:
            dealt = min(len(clients), len(test))
            parts = [*iid(len(test), dealt, seed),
                     *[np.zeros(0, np.int64)] * (len(clients) - dealt)]
            notes.append(f"data.partitioner={cfg.data.partitioner} cannot split the "
                         f"{len(test)} held-out {modality} examples among {len(clients)} "
                         f"clients ({err}); dealt out uniformly at random instead")
        for client, part in zip(clients, parts, strict=True):
            per_client[client][modality] = np.asarray(part, np.int64)
    empty = [c for c, held in enumerate(per_client) if sum(map(len, held.values())) == 0]
    if empty:
        notes.append(f"{len(empty)} of {num_partitions} clients hold no held-out example "
                     f"and are skipped in federated evaluation (clients {_id_list(empty)})")
    return per_client, notes


def _id_list(ids: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f", … ({len(ids) - limit} more)" if len(ids) > limit else "")


@dataclass
class BuiltRun:
    """A run ready to start: its data, partitions, task and (on the server) strategy."""

    cfg: RunConfig
    splits: dict[str, ImageSplit]
    task: Task
    initial_state: dict[str, torch.Tensor]
    strategy: Strategy | None = None
    _partitions: dict[int, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    _test_partitions: dict[int, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    # what start-up found about the held-out split's partition (federated evaluation)
    test_partition_notes: list[str] = field(default_factory=list)

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

    def test_partitions(self, num_partitions: int | None = None) -> list[dict[str, np.ndarray]]:
        """Every client's share of the held-out split (see :func:`partition_test_clients`)."""
        num = num_partitions or self.cfg.fl.num_clients
        if num not in self._test_partitions:
            self._test_partitions[num], notes = partition_test_clients(self.cfg, self.splits,
                                                                       num)
            if num == self.cfg.fl.num_clients:
                self.test_partition_notes = notes
        return self._test_partitions[num]

    def client_test_data(self, partition_id: int, num_partitions: int | None = None
                         ) -> ClientData:
        """A client's held-out examples, for federated evaluation; ``indices`` are
        positions in the test split, and a modality the client holds no held-out example
        of is left out (``num_examples`` is 0 when it holds none at all)."""
        indices = {m: idx for m, idx in self.test_partitions(num_partitions)[partition_id]
                   .items() if len(idx)}
        return self._data(partition_id, indices, split=1)

    def pooled_data(self) -> ClientData:
        """All training data as one client (centralised runs)."""
        return self._data(0, {m: np.arange(len(train)) for m, (train, _) in self.splits.items()})

    def _data(self, client_id: int, indices: dict[str, np.ndarray], split: int = 0
              ) -> ClientData:
        return ClientData(
            client_id=client_id,
            inputs={m: self.splits[m][split].images[torch.from_numpy(idx)]
                    for m, idx in indices.items()},
            labels={m: self.splits[m][split].labels[idx] for m, idx in indices.items()},
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
    if cfg.fl.federated_eval:
        _check_federated_eval(cfg, task)
    strategy = None
    if with_strategy:
        # without federated evaluation, evaluation is central only (on held-out data)
        evaluation: dict[str, float] = {"fraction_evaluate": 0.0}
        if cfg.fl.federated_eval:
            evaluation = {"fraction_evaluate": cfg.fl.fraction_evaluate,
                          "min_evaluate_nodes": max(1, round(cfg.fl.fraction_evaluate
                                                             * cfg.fl.num_clients))}
        strategy = strategies.create(
            cfg.fl.strategy,
            fraction_train=cfg.fl.fraction_train,
            min_train_nodes=train_nodes_per_round(cfg.fl),
            min_available_nodes=cfg.fl.num_clients,
            **evaluation,
            **resolved.strategy,
        )
        if not isinstance(strategy, ScreenedStrategyMixin):
            raise ConfigError(
                f"invalid recipe field 'fl.strategy': {cfg.fl.strategy} builds a "
                f"{type(strategy).__name__}, which does not screen client updates; put "
                "avfed.fl.strategies.base.ScreenedStrategyMixin first in its bases")
        strategy.min_accepted = cfg.fl.min_clients
        strategy.sampling_seed = cfg.seed
        # clients evaluate in the rounds the central evaluation runs in
        strategy.evaluate_every, strategy.last_round = cfg.fl.eval_every, cfg.fl.rounds
        try:
            rule_name(strategy.client_config(1))
        except KeyError as err:
            raise ConfigError(f"invalid recipe field 'fl.strategy': {err.args[0]}") from None
    built = BuiltRun(cfg, splits, task, initial, strategy)
    built._partitions[cfg.fl.num_clients] = built_partitions
    if cfg.fl.federated_eval:
        built.test_partitions()  # the reporter prints its notes when the run starts
    return built


def _check_federated_eval(cfg: RunConfig, task: Task) -> None:
    """Federated evaluation needs a task that scores a client's own held-out data."""
    if type(task).evaluate_local is Task.evaluate_local:
        raise ConfigError(
            f"invalid recipe field 'fl.federated_eval': the {cfg.task.name} task has no "
            "per-client score (Task.evaluate_local); set fl.federated_eval=false or use a "
            "task that implements it")


