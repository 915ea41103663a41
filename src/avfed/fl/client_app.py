"""The ClientApp: local SSL training on this node's partition of the data.

Launched by Flower (simulation actors or a SuperNode). Each node reads its
``partition-id`` / ``num-partitions`` from its node config; in simulation Flower sets
them, on a SuperNode pass ``--node-config "partition-id=0 num-partitions=10"``.

Per round a client: restores its own last model (or the initial one) so that parts
it never shares (a momentum target, a queue, local heads) carry over; merges in the
global weights by the rule the strategy asked for (plain replacement by default); trains
locally, with FedProx's proximal term when the strategy sends ``proximal-mu``; and
saves its model back into its node state when anything of it must persist.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from avfed.audio.augment import reset_mixup_memories
from avfed.components import build_augmentations, build_method, client_data, data_splits
from avfed.config import RunConfig, fingerprint
from avfed.fl.client_merge import (
    Regularizer,
    combine_regularizers,
    merge_global,
    needs_local_state,
    proximal_regularizer,
)
from avfed.fl.client_state import (
    client_memory,
    save_client_memory,
    save_local_state,
    saved_local_state,
)
from avfed.fl.protocol import WEIGHT_KEY, config_from_record
from avfed.logging_utils import drop_expected_flower_notices
from avfed.seeding import derive_seed
from avfed.ssl.base import SSLMethod
from avfed.ssl.cross_modal import cross_modal_regularizer, label_pairs
from avfed.training import train_ssl

app = ClientApp()
drop_expected_flower_notices()  # this module is imported in every simulation actor


class _CachedModel:
    """One model per (process, config), plus its initial state to reset clients to."""

    def __init__(self, cfg: RunConfig) -> None:
        # one actor = client_cpus cores: more threads than that only fight the other actors
        torch.set_num_threads(cfg.fl.client_threads or cfg.fl.client_cpus)
        self.method: SSLMethod = build_method(cfg).to(cfg.device)
        self.initial = {k: v.detach().clone() for k, v in self.method.state_dict().items()}
        self.augment = {m: a.to(cfg.device) for m, a in build_augmentations(cfg).items()}
        shared = set(self.method.shared_state())
        self.has_private_state = any(k not in shared for k in self.initial)


# Flower calls the app once per round per client; rebuilding the network every call
# would dominate short rounds, so each process keeps one model per config.
_models: dict[str, _CachedModel] = {}


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


def _model_for(cfg: RunConfig) -> _CachedModel:
    key = fingerprint(cfg)
    if key not in _models:
        _models[key] = _CachedModel(cfg)
    return _models[key]


def _cross_modal_term(cfg: RunConfig, method: SSLMethod, inputs: dict[str, torch.Tensor],
                      indices: dict[str, np.ndarray], seed: int) -> Regularizer | None:
    """FSSUAVL's auxiliary pair term, for clients holding both modalities."""
    if cfg.ssl.cross_modal_weight <= 0 or not {"image", "audio"} <= set(inputs):
        return None
    splits = data_splits(cfg)
    pairs = label_pairs(splits["image"][0].labels[indices["image"]],
                        splits["audio"][0].labels[indices["audio"]],
                        np.random.default_rng(seed))
    return cross_modal_regularizer(method, inputs["image"], inputs["audio"], pairs,
                                   weight=cfg.ssl.cross_modal_weight,
                                   batch_size=cfg.train.batch_size, seed=seed)


@app.train()
def train(msg: Message, context: Context) -> Message:
    started = time.perf_counter()
    config: ConfigRecord = msg.content["config"]
    cfg = config_from_record(config)
    pid, num = node_partition(context)
    server_round = int(config["server-round"])
    splits = data_splits(cfg)
    inputs = {m: splits[m][0].images[torch.from_numpy(idx)]
              for m, idx in client_data(cfg, pid, num).items()}
    cached = _model_for(cfg)
    method = cached.method

    local = saved_local_state(context)
    method.load_state_dict(local if local is not None else cached.initial)
    global_state = msg.content["arrays"].to_torch_state_dict()
    memory = client_memory(context)
    merged = merge_global(method.shared_state(), global_state, config,
                          first_round=local is None, memory=memory)
    method.load_shared_state(merged)
    save_client_memory(context, memory)

    for augment in cached.augment.values():
        # mixup memories hold past inputs: never let one client's audio reach another's
        reset_mixup_memories(augment)
    seed = derive_seed(cfg.seed, server_round, pid)
    torch.manual_seed(seed)  # kornia draws augmentation parameters from the global RNG
    generator = torch.Generator().manual_seed(seed)
    regularizer = combine_regularizers(
        proximal_regularizer(method, global_state, config),
        _cross_modal_term(cfg, method, inputs, client_data(cfg, pid, num), seed),
    )
    result = train_ssl(method, inputs, {m: cached.augment[m] for m in inputs}, cfg.train,
                       generator=generator, device=cfg.device, regularizer=regularizer)

    if cached.has_private_state or needs_local_state(config):
        save_local_state(context, method.state_dict())
    shared = {k: v.detach().cpu() for k, v in method.shared_state().items()}
    metrics = MetricRecord(
        {
            "loss": result.loss,
            "first-epoch-loss": result.first_loss,
            WEIGHT_KEY: result.num_examples,
            "partition-id": pid,
            "train-time": result.seconds,
            "handler-time": time.perf_counter() - started,
            **({"divergence": memory["divergence"]} if "divergence" in memory else {}),
        }
    )
    return Message(RecordDict({"arrays": ArrayRecord(shared), "metrics": metrics}), reply_to=msg)
