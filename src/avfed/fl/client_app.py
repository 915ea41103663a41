"""The ClientApp: one round of the run's task on this node's partition of the data.

Launched by Flower (simulation actors or a SuperNode). Each node reads its
``partition-id`` / ``num-partitions`` from its node config; in simulation Flower sets
them, on a SuperNode pass ``--node-config "partition-id=0 num-partitions=10"``.

Node-local data: a SuperNode started with ``data-root=/path`` in its node config trains
on everything in that folder (read as the recipe's ``data.source``, which must be a
folder source) instead of cutting a partition out of a shared copy; ``partition-id``
then only numbers the node (seeds, logs). Such a node needs none of the server's data;
evaluation stays with the server, and in federated evaluation the node is skipped.

Per round a client: restores its own last model (or the initial one) so that parts
it never shares (a momentum target, a queue, local heads) carry over; merges in the
global weights by the rule the strategy asked for (plain replacement by default); lets
the task train, with FedProx's proximal term when the strategy sends ``proximal-mu``;
and saves its model back into its node state when anything of it must persist. What
is trained, and how, is the task's business (:mod:`avfed.tasks`).

With ``fl.federated_eval`` a client also scores the global model on its own share of
the held-out split (:meth:`avfed.tasks.Task.evaluate_local`): its own saved model is
restored first, so parts it never shares are its own, then the global weights are
loaded. Nothing of an evaluation is saved; an exception becomes an error reply, which
the server counts without stopping the run.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from avfed.build import BuiltRun, build_run, resolve_components
from avfed.config import RunConfig, _reads_folder
from avfed.data.catalog import load_split, source_modality
from avfed.fl.client_merge import merge_global, needs_local_state, proximal_regularizer
from avfed.fl.client_state import (
    client_memory,
    save_client_memory,
    save_local_state,
    saved_local_state,
)
from avfed.fl.protocol import (
    ARRAYS,
    CONFIG,
    CONFIG_KEY,
    EVAL_BOOKKEEPING,
    LOSS_KEY,
    METRICS,
    NO_TEST_DATA_KEY,
    PARTITION_KEY,
    SERVER_ROUND_KEY,
    WEIGHT_KEY,
    config_from_record,
)
from avfed.logging_utils import drop_expected_flower_notices
from avfed.seeding import derive_seed
from avfed.tasks import ClientData, TrainContext, task_registry
from avfed.tasks.parts import RunParts

app = ClientApp()
drop_expected_flower_notices()  # this module is imported in every simulation actor

# Flower calls the app once per round per client; rebuilding data and model every call
# would dominate short rounds, so each process keeps one build per config (keyed by the
# config's JSON as sent, so a message is parsed and validated only on a cache miss).
_builds: dict[tuple[str, str | None], BuiltRun] = {}

DATA_ROOT_KEY = "data-root"  # node config: this node's own data folder


def node_data_root(context: Context) -> str | None:
    root = context.node_config.get(DATA_ROOT_KEY)
    return str(root) if root else None


def node_partition(context: Context) -> tuple[int, int]:
    if node_data_root(context) is not None:  # a node with its own data: its number only
        pid = int(context.node_config.get("partition-id", 0))
        return pid, max(pid + 1, int(context.node_config.get("num-partitions", 1)))
    try:
        pid = int(context.node_config["partition-id"])
        num = int(context.node_config["num-partitions"])
    except KeyError as err:
        raise ValueError(
            f"node config lacks {err}; start the SuperNode with "
            "--node-config \"partition-id=<i> num-partitions=<n>\""
        ) from None
    if not 0 <= pid < num:
        raise ValueError(f"partition-id {pid} is outside [0, {num})")
    return pid, num


def client_build(config: ConfigRecord, data_root: str | None = None) -> BuiltRun:
    """This process's build of the run the message belongs to (on this node's own data
    when it has a ``data_root``)."""
    key = (str(config.get(CONFIG_KEY, "")), data_root)
    if key not in _builds:
        cfg = config_from_record(config)
        # one actor = client_cpus cores: more threads than that only fight the other actors
        torch.set_num_threads(cfg.fl.client_threads or cfg.fl.client_cpus)
        _builds[key] = (build_run(cfg, with_strategy=False) if data_root is None
                        else node_local_build(cfg, data_root))
    return _builds[key]


def node_local_config(cfg: RunConfig, root: str) -> RunConfig:
    """The run's config with the data read from this node's own folder."""
    if cfg.data.audio_source is not None:
        raise ValueError(f"{DATA_ROOT_KEY}={root}: node-local data holds one source, but "
                         f"this run also has data.audio_source={cfg.data.audio_source}")
    if not _reads_folder(cfg.data.source):
        raise ValueError(
            f"{DATA_ROOT_KEY}={root}: data.source={cfg.data.source} is built in, not read "
            "from a folder; node-local data needs a folder source (image_folder, "
            "audio_folder, esc50, speech_commands)")
    return replace(cfg, data=replace(cfg.data, root=root))


def node_local_build(cfg: RunConfig, root: str) -> BuiltRun:
    """The task built on this node's folder alone: no partitioning and none of the
    server's start-up checks on evaluation data (a node may well hold a single class)."""
    cfg = node_local_config(cfg, root)
    resolved = resolve_components(cfg)
    try:
        splits = {source_modality(cfg.data.source): load_split(cfg.data, cfg.seed)}
    except (OSError, ValueError) as err:
        raise ValueError(f"{DATA_ROOT_KEY}={root}: cannot read this node's data: {err}") from None
    task = task_registry.get(cfg.task.name)(RunParts(cfg, splits, resolved), **resolved.task)
    initial = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    return BuiltRun(cfg, splits, task, initial)


def all_local_data(built: BuiltRun, node_number: int) -> ClientData:
    """Everything a node-local build holds, both halves of its split, as one client."""
    inputs, labels, indices = {}, {}, {}
    for modality, (train, test) in built.splits.items():
        inputs[modality] = torch.cat([train.images, test.images])
        labels[modality] = np.concatenate([train.labels, test.labels])
        indices[modality] = np.arange(len(inputs[modality]))
    return ClientData(client_id=node_number, inputs=inputs, labels=labels, indices=indices)


def check_fits_global(built: BuiltRun, global_state: dict[str, torch.Tensor], root: str) -> None:
    """A node-local model must have the global model's shapes (a supervised head sized by
    the classes the node holds may not)."""
    for key, value in built.task.shared_state().items():
        if key in global_state and tuple(global_state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{DATA_ROOT_KEY}={root}: this node's data makes '{key}' of shape "
                f"{tuple(value.shape)}, the global model's is {tuple(global_state[key].shape)}"
                "; every node must hold the same classes (sub-folders)")


def restore_client_model(built: BuiltRun, context: Context) -> dict | None:
    """Load this client's own last model (or the initial one) into the task; one process
    hosts many clients, so the model in memory belongs to whichever ran last. Returns
    the client's saved state, ``None`` before its first round."""
    local = saved_local_state(context)
    built.task.model.load_state_dict(local if local is not None else built.initial_state)
    return local


@app.train()
def train(msg: Message, context: Context) -> Message:
    started = time.perf_counter()
    config: ConfigRecord = msg.content[CONFIG]
    root = node_data_root(context)
    built = client_build(config, root)
    cfg, task = built.cfg, built.task
    pid, num = node_partition(context)
    server_round = int(config[SERVER_ROUND_KEY])

    local = restore_client_model(built, context)
    global_state = msg.content[ARRAYS].to_torch_state_dict()
    if root is not None:
        check_fits_global(built, global_state, root)
    memory = client_memory(context)
    merged = merge_global(task.shared_state(), global_state, config,
                          first_round=local is None, memory=memory)
    task.load_shared_state(merged)
    save_client_memory(context, memory)

    task.forget_client()
    data = all_local_data(built, pid) if root is not None else built.client_data(pid, num)
    outcome = task.train(data, TrainContext(
        seed=derive_seed(cfg.seed, server_round, pid), server_round=server_round,
        regularizer=proximal_regularizer(task.model, global_state, config)))

    if built.has_private_state or needs_local_state(config):
        save_local_state(context, task.model.state_dict())
    shared = {k: v.detach().cpu() for k, v in task.shared_state().items()}
    metrics = MetricRecord({
        LOSS_KEY: outcome.loss,
        **outcome.metrics,
        WEIGHT_KEY: outcome.num_examples,
        PARTITION_KEY: pid,
        "train-time": outcome.seconds,
        "handler-time": time.perf_counter() - started,
        **({"divergence": memory["divergence"]} if "divergence" in memory else {}),
    })
    return Message(RecordDict({ARRAYS: ArrayRecord(shared), METRICS: metrics}), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Which partition this node holds, from its config alone: the server orders the
    nodes by it, so that a round training only some of them draws the same partitions
    for the same seed (node ids are random on every run)."""
    pid, _ = node_partition(context)
    return Message(RecordDict({METRICS: MetricRecord({PARTITION_KEY: pid})}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    config: ConfigRecord = msg.content[CONFIG]
    pid, num = node_partition(context)
    if node_data_root(context) is not None:  # held-out data stays with the server
        metrics = MetricRecord({NO_TEST_DATA_KEY: 1, WEIGHT_KEY: 0, PARTITION_KEY: pid})
        return Message(RecordDict({METRICS: metrics}), reply_to=msg)
    built = client_build(config)
    task = built.task
    data = built.client_test_data(pid, num)
    if data.num_examples == 0:
        metrics = MetricRecord({NO_TEST_DATA_KEY: 1, WEIGHT_KEY: 0, PARTITION_KEY: pid})
        return Message(RecordDict({METRICS: metrics}), reply_to=msg)

    restore_client_model(built, context)
    task.load_shared_state(msg.content[ARRAYS].to_torch_state_dict())
    task.forget_client()
    scores = task.evaluate_local(data)
    if scores is None:
        raise RuntimeError(f"the {task.name} task has no per-client score (evaluate_local)")
    clashing = sorted(set(scores) & set(EVAL_BOOKKEEPING))
    if clashing:
        raise RuntimeError(f"evaluate_local returned reserved metric names {clashing}")
    metrics = MetricRecord({**{k: float(v) for k, v in scores.items()},
                            WEIGHT_KEY: data.num_examples, PARTITION_KEY: pid})
    return Message(RecordDict({METRICS: metrics}), reply_to=msg)
