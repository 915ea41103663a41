"""The ClientApp: one round of the run's task on this node's partition of the data.

Launched by Flower (simulation actors or a SuperNode). Each node reads its
``partition-id`` / ``num-partitions`` from its node config; in simulation Flower sets
them, on a SuperNode pass ``--node-config "partition-id=0 num-partitions=10"``.

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

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from avfed.build import BuiltRun, build_run
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
from avfed.tasks import TrainContext

app = ClientApp()
drop_expected_flower_notices()  # this module is imported in every simulation actor

# Flower calls the app once per round per client; rebuilding data and model every call
# would dominate short rounds, so each process keeps one build per config (keyed by the
# config's JSON as sent, so a message is parsed and validated only on a cache miss).
_builds: dict[str, BuiltRun] = {}


def node_partition(context: Context) -> tuple[int, int]:
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


def client_build(config: ConfigRecord) -> BuiltRun:
    """This process's build of the run the message belongs to."""
    key = str(config.get(CONFIG_KEY, ""))
    if key not in _builds:
        cfg = config_from_record(config)
        # one actor = client_cpus cores: more threads than that only fight the other actors
        torch.set_num_threads(cfg.fl.client_threads or cfg.fl.client_cpus)
        _builds[key] = build_run(cfg, with_strategy=False)
    return _builds[key]


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
    built = client_build(config)
    cfg, task = built.cfg, built.task
    pid, num = node_partition(context)
    server_round = int(config[SERVER_ROUND_KEY])

    local = restore_client_model(built, context)
    global_state = msg.content[ARRAYS].to_torch_state_dict()
    memory = client_memory(context)
    merged = merge_global(task.shared_state(), global_state, config,
                          first_round=local is None, memory=memory)
    task.load_shared_state(merged)
    save_client_memory(context, memory)

    task.forget_client()
    outcome = task.train(built.client_data(pid, num), TrainContext(
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


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    config: ConfigRecord = msg.content[CONFIG]
    built = client_build(config)
    task = built.task
    pid, num = node_partition(context)
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
