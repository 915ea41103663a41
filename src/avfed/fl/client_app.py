"""The ClientApp: local SSL training on this node's partition of the data.

Launched by Flower (simulation actors or a SuperNode). Each node reads its
``partition-id`` / ``num-partitions`` from its node config; in simulation Flower sets
them, on a SuperNode pass ``--node-config "partition-id=0 num-partitions=10"``.
"""

from __future__ import annotations

import time

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from avfed.components import build_augmentation, build_method, client_indices, image_split
from avfed.config import RunConfig, fingerprint
from avfed.fl.protocol import WEIGHT_KEY, config_from_record
from avfed.logging_utils import drop_expected_flower_notices
from avfed.seeding import derive_seed
from avfed.ssl.base import SSLMethod
from avfed.training import train_ssl

app = ClientApp()
drop_expected_flower_notices()  # this module is imported in every simulation actor

# One model and one augmentation per (process, config): Flower calls the app once per
# round per client, and rebuilding a network every call would dominate short rounds.
_methods: dict[str, tuple[SSLMethod, torch.nn.Module]] = {}


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


def _method_for(cfg: RunConfig, channels: int) -> tuple[SSLMethod, torch.nn.Module]:
    key = fingerprint(cfg)
    if key not in _methods:
        # one actor = client_cpus cores: more threads than that only fight the other actors
        torch.set_num_threads(cfg.fl.client_threads or cfg.fl.client_cpus)
        method = build_method(cfg, channels).to(cfg.device)
        _methods[key] = (method, build_augmentation(cfg, channels).to(cfg.device))
    return _methods[key]


@app.train()
def train(msg: Message, context: Context) -> Message:
    started = time.perf_counter()
    cfg = config_from_record(msg.content["config"])
    pid, num = node_partition(context)
    server_round = int(msg.content["config"]["server-round"])
    train_set, _ = image_split(cfg)
    images = train_set.images[torch.from_numpy(client_indices(cfg, pid, num))]
    method, augment = _method_for(cfg, images.shape[1])
    method.load_shared_state(msg.content["arrays"].to_torch_state_dict())

    seed = derive_seed(cfg.seed, server_round, pid)
    torch.manual_seed(seed)  # kornia draws augmentation parameters from the global RNG
    generator = torch.Generator().manual_seed(seed)
    result = train_ssl(method, images, augment, cfg.train, generator=generator,
                       device=cfg.device)

    shared = {k: v.detach().cpu() for k, v in method.shared_state().items()}
    metrics = MetricRecord(
        {
            "loss": result.loss,
            "first-epoch-loss": result.first_loss,
            WEIGHT_KEY: result.num_examples,
            "partition-id": pid,
            "train-time": result.seconds,
            "handler-time": time.perf_counter() - started,
        }
    )
    return Message(RecordDict({"arrays": ArrayRecord(shared), "metrics": metrics}), reply_to=msg)
