"""What a federated client keeps between rounds, in Flower's per-node ``Context.state``.

Several SSL methods and aggregation rules need a client to remember its own model:
BYOL's momentum target and MoCo's queue never leave the client, FedVSSL's partial
update keeps each client's pretext heads, FedU / FedEMA blend the received global
model into the client's previous one. A simulation actor hosts many clients with one
cached model instance, so that memory cannot live in the model object; it lives in the
node's context, which Flower persists per node across rounds (in simulation and on a
SuperNode alike).
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context

LOCAL_MODEL_KEY = "avfed-local-model"
MEMORY_KEY = "avfed-client-memory"


def saved_local_state(context: Context) -> dict[str, torch.Tensor] | None:
    """The full state dict this client saved after its last round, if any."""
    if LOCAL_MODEL_KEY not in context.state.array_records:
        return None
    return dict(context.state.array_records[LOCAL_MODEL_KEY].to_torch_state_dict())


def save_local_state(context: Context, state: dict[str, torch.Tensor]) -> None:
    context.state[LOCAL_MODEL_KEY] = ArrayRecord(
        {k: v.detach().cpu().clone() for k, v in state.items()}
    )


def client_memory(context: Context) -> dict[str, float]:
    """Scalars a client update rule keeps across rounds (e.g. FedEMA's λ)."""
    if MEMORY_KEY not in context.state.config_records:
        return {}
    return {k: float(v) for k, v in context.state.config_records[MEMORY_KEY].items()}


def save_client_memory(context: Context, memory: dict[str, float]) -> None:
    if memory:
        context.state[MEMORY_KEY] = ConfigRecord(dict(memory))
