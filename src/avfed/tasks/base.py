"""The task interface: what one kind of training is, to the engine that runs it.

The ClientApp, the ServerApp, ``--central`` runs and the benchmarks drive a
:class:`Task` and nothing more specific, so a new kind of training (supervised
fine-tuning, a video pretext task, a regression network, a generator and its
discriminator) plugs in by implementing this class and registering a factory with
:func:`avfed.tasks.register_task`; the engine is not touched.

A task owns one ``nn.Module`` (``task.model``, possibly a container of several
networks). Per round the engine, on a client:

1. loads the client's own last ``model.state_dict()`` (or the initial one),
2. merges the global :meth:`shared_state` into it by the strategy's client rule,
3. calls :meth:`train` on the client's data,
4. sends :meth:`shared_state` back, and keeps ``model.state_dict()`` for next round
   when anything of it is private (``shared_state`` is a strict subset) or the rule
   needs it.

On the server the engine loads each new global state with :meth:`load_shared_state`,
scores it with :meth:`evaluate`, and saves :meth:`checkpoint_state`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

State = dict[str, torch.Tensor]
Regularizer = Callable[[], torch.Tensor]


def combine_regularizers(*terms: Regularizer | None) -> Regularizer | None:
    """Sum the terms that are present; ``None`` when there are none."""
    active = [t for t in terms if t is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda: sum(t() for t in active)  # type: ignore[return-value]


@dataclass
class ClientData:
    """What one client trains on (a central run: the pooled training split).

    ``inputs[m]`` are modality ``m``'s examples, ``labels[m]`` their labels (for tasks
    that use them; SSL ignores them) and ``indices[m]`` their positions in the run's
    training split.
    """

    client_id: int
    inputs: dict[str, torch.Tensor]
    labels: dict[str, np.ndarray]
    indices: dict[str, np.ndarray]

    @property
    def num_examples(self) -> int:
        return sum(len(x) for x in self.inputs.values())


@dataclass
class TrainContext:
    """Per-round settings the engine decides for the task.

    ``seed`` is derived from (run seed, round, client), so runs are reproducible whatever
    order clients run in; ``regularizer`` is a term the strategy asks to add to the
    optimised loss (FedProx's proximal term), or ``None``.
    """

    seed: int
    server_round: int
    regularizer: Regularizer | None = None

    def fp32_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                  what: str = "loss") -> None:
        """One plain fp32 optimizer step on ``loss`` plus the strategy's regularizer.

        A non-finite loss raises before it touches the weights: the client then fails
        loudly and its round is rejected, instead of sending NaN weights to the server.
        """
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{what} became {loss.item()}")
        objective = loss if self.regularizer is None else loss + self.regularizer()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()


@dataclass
class TrainOutcome:
    """What a round of local training reports; ``metrics`` are extra per-client numbers."""

    loss: float
    num_examples: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


class Task(ABC):
    """One kind of training; see the module docstring for how the engine drives it."""

    name: str = "task"
    model: nn.Module

    def shared_state(self) -> State:
        """The tensors exchanged with the server (default: the whole state)."""
        return dict(self.model.state_dict())

    def load_shared_state(self, state: State) -> None:
        """Load a global state; it must hold exactly the shared tensors."""
        expected, got = set(self.shared_state()), set(state)
        if got != expected:
            missing, extra = sorted(expected - got)[:3], sorted(got - expected)[:3]
            raise ValueError(f"global weights do not match the {self.name} task's shared "
                             f"state (missing {missing}, unexpected {extra})")
        self.model.load_state_dict(state, strict=False)

    def checkpoint_state(self, federated: bool) -> State:
        """What a checkpoint holds: in a federated run only what the global model really
        holds (the server's copy of client-private parts is never trained)."""
        return self.shared_state() if federated else dict(self.model.state_dict())

    def forget_client(self) -> None:
        """Drop anything a previous client left in the task's modules (the engine calls
        it before each client's round; one process hosts many clients)."""
        return None

    def baselines(self) -> dict[str, dict[str, float]]:
        """Named reference scores computed without training (``{"raw input": {...}}``),
        printed beside the run's results so that no number is shown without the trivial
        baseline it must beat; same keys as :meth:`evaluate`."""
        return {}

    def write_artifacts(self, folder: Path) -> list[Path]:
        """Files the finished model leaves in the run folder beside the metrics (a
        classifier's confusion matrix, say); the engine calls it once, at the end."""
        return []

    def evaluate_local(self, data: ClientData) -> dict[str, float] | None:
        """Score the current model on one client's own held-out data (federated
        evaluation, as FL papers report personalisation gaps); ``None`` when this kind
        of training has no per-client score."""
        return None

    @abstractmethod
    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        """Train ``self.model`` on ``data`` for one round."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Score the current model on the run's held-out data (higher is better for
        every key the run summary prints)."""
