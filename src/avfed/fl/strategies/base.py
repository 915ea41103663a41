"""What avfed adds to every Flower strategy: screening, ordering and bookkeeping.

:class:`ScreenedStrategyMixin` goes in front of a Flower strategy class in the MRO.
It remembers the global model's tensor shapes when a round is configured, drops bad
replies before the wrapped strategy aggregates (so its rule never sees them), sorts
the rest by partition id (float sums then do not depend on arrival order, which keeps
runs reproducible), and records per-client metrics and round timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from logging import WARNING
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from avfed.fl.strategies.screening import Rejection, reference_shapes, screen_replies
from avfed.logging_utils import get_logger

log = get_logger(__name__)


@dataclass
class RoundRecord:
    server_round: int
    started: float
    replies_at: float = 0.0
    clients: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class ScreenedStrategyMixin:
    """Mix into a Flower strategy: ``class X(ScreenedStrategyMixin, FedAvg)``."""

    weighted_by_key: str

    def __init__(self, *args: Any, on_round: Callable[[RoundRecord], None] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("train_metrics_aggr_fn", _average_client_metrics)
        super().__init__(*args, **kwargs)
        self.on_round = on_round
        self.rounds: dict[int, RoundRecord] = {}
        self._expected: dict[str, tuple[int, ...]] = {}
        self.previous_global: ArrayRecord | None = None

    def client_config(self, server_round: int) -> dict[str, Any]:
        """Extra train-config entries for the clients (a client-side update rule, say)."""
        return {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._expected = reference_shapes(arrays)
        self.previous_global = arrays  # rules that compare with or mix in w_{r-1} read it
        self.rounds[server_round] = RoundRecord(server_round, time.perf_counter())
        for key, value in self.client_config(server_round).items():
            config[key] = value
        return super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        now = time.perf_counter()
        record = self.rounds.setdefault(server_round, RoundRecord(server_round, now))
        record.replies_at = now
        accepted, rejected = screen_replies(replies, self._expected, self.weighted_by_key)
        for bad in rejected:
            log.log(WARNING, "round %d: excluded update from node %d: %s",
                    server_round, bad.node_id, bad.reason)
        accepted.sort(key=_partition_id)
        record.rejected = rejected
        record.clients = [_client_row(server_round, msg) for msg in accepted]
        if self.on_round is not None:
            self.on_round(record)
        if not accepted:
            log.log(WARNING, "round %d: no valid update; the global model is unchanged",
                    server_round)
            return None, None
        return super().aggregate_train(server_round, accepted)  # type: ignore[misc]


# Per-client bookkeeping: recorded per client, meaningless once averaged over clients.
_NOT_AVERAGED = ("partition-id", "handler-time", "divergence")


def _average_client_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    averaged = aggregate_metricrecords(records, weight_key)
    for key in _NOT_AVERAGED:
        if key in averaged:
            del averaged[key]
    return averaged


def _partition_id(msg: Message) -> tuple[float, int]:
    metrics = next(iter(msg.content.metric_records.values()))
    return float(metrics.get("partition-id", 0)), msg.metadata.src_node_id


def _client_row(server_round: int, msg: Message) -> dict[str, Any]:
    metrics = next(iter(msg.content.metric_records.values()))
    return {"round": server_round, "node_id": msg.metadata.src_node_id, **dict(metrics)}
