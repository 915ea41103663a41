"""A FedAvg whose array aggregation is replaced by a custom rule on numpy states.

Flower's FedAvg keeps the sampling, configuration and metric aggregation; subclasses
only say how the accepted clients' tensors become the new global tensors, given their
example counts, their training losses and the previous global model.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg

from avfed.fl.aggregation import State
from avfed.fl.strategies.base import ScreenedStrategyMixin


def reply_state(msg: Message) -> State:
    arrays = next(iter(msg.content.array_records.values()))
    return {key: array.numpy() for key, array in arrays.items()}


def reply_metric(msg: Message, key: str) -> float:
    return float(next(iter(msg.content.metric_records.values()))[key])


def _contiguous(array: np.ndarray) -> np.ndarray:
    """C-contiguous without promoting 0-d tensors to 1-d (np.ascontiguousarray would)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy()


class _RuleFedAvg(FedAvg):
    """FedAvg with ``aggregate_train`` delegating the arrays to :meth:`combine`."""

    previous_global: ArrayRecord | None

    def combine(self, server_round: int, states: list[State], num_examples: list[float],
                losses: list[float], previous: State | None) -> State:
        raise NotImplementedError

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted = list(replies)  # already screened and ordered by the mixin
        if not accepted:
            return None, None
        states = [reply_state(m) for m in accepted]
        counts = [reply_metric(m, self.weighted_by_key) for m in accepted]
        losses = [reply_metric(m, "loss") for m in accepted]
        previous = None
        if self.previous_global is not None:
            previous = {k: a.numpy() for k, a in self.previous_global.items()}
        combined = self.combine(server_round, states, counts, losses, previous)
        arrays = ArrayRecord({k: Array(_contiguous(v)) for k, v in combined.items()})
        metrics = self.train_metrics_aggr_fn([m.content for m in accepted],
                                             self.weighted_by_key)
        return arrays, metrics


class RuleStrategy(ScreenedStrategyMixin, _RuleFedAvg):
    """Subclasses implement :meth:`combine`; screening happens before it is called."""

