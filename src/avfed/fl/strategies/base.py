"""What avfed adds to every Flower strategy: screening, ordering, accounting, failure.

:class:`ScreenedStrategyMixin` goes in front of a Flower strategy class in the MRO.
It remembers the global model's tensor shapes and which nodes it asked when a round
is configured; when the replies are in, it drops bad ones before the wrapped
strategy aggregates (so its rule never sees them), counts the nodes that did not
answer within ``fl.timeout_s`` as timed out, sorts the rest by partition id (float
sums then do not depend on arrival order, which keeps runs reproducible), and records
per-client metrics and round timings. A round with fewer accepted updates than
``min_accepted`` raises :class:`RoundFailed` naming the clients' errors, which stops
the run instead of carrying on with a model no client could train.

Federated evaluation (``fl.federated_eval``) is screened the same way but never stops
a run: in the rounds :meth:`ScreenedStrategyMixin.evaluates` names, the clients asked
score the global model on their own held-out data; replies that carry an error, a
non-finite score or no example count, clients without held-out data and clients that
did not answer are left out and counted, and the per-client rows go to ``on_evaluate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from logging import WARNING
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from avfed.fl.strategies.screening import reference_shapes, screen_eval_reply, screen_replies
from avfed.logging_utils import get_logger
from avfed.rounds import (
    EVAL_BOOKKEEPING,
    PARTITION_KEY,
    Rejection,
    RoundRecord,
    describe_failures,
    score_distribution,
)

log = get_logger(__name__)


class RoundFailed(RuntimeError):
    """Too few clients of a round produced a usable update; the run cannot go on."""


class ScreenedStrategyMixin:
    """Mix into a Flower strategy: ``class X(ScreenedStrategyMixin, FedAvg)``."""

    weighted_by_key: str

    def __init__(self, *args: Any, on_round: Callable[[RoundRecord], None] | None = None,
                 min_accepted: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("train_metrics_aggr_fn", _average_client_metrics)
        super().__init__(*args, **kwargs)
        if min_accepted < 1:
            raise ValueError(f"min_accepted must be >= 1, got {min_accepted}")
        self.on_round = on_round
        self.min_accepted = min_accepted
        self.rounds: dict[int, RoundRecord] = {}
        self._expected: dict[str, tuple[int, ...]] = {}
        self._asked: list[int] = []
        self._partition_of: dict[int, int] = {}  # node id → partition id, once known
        self.previous_global: ArrayRecord | None = None
        # federated evaluation: the rounds it runs in (every evaluate_every-th and the
        # last), where its per-client rows go, and what each round asked and got
        self.evaluate_every = 1
        self.last_round: int | None = None
        self.on_evaluate: Callable[[RoundRecord], None] | None = None
        self.eval_rounds: dict[int, RoundRecord] = {}
        self._eval_asked: list[int] = []

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
        messages = list(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]
        self._asked = [msg.metadata.dst_node_id for msg in messages]
        self.rounds[server_round].asked = len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        now = time.perf_counter()
        record = self.rounds.setdefault(server_round, RoundRecord(server_round, now))
        record.replies_at = now
        replies = list(replies)
        accepted, rejected = screen_replies(replies, self._expected, self.weighted_by_key)
        answered = {msg.metadata.src_node_id for msg in replies}
        rejected += [Rejection(node, "no reply within fl.timeout_s", "timeout")
                     for node in self._asked if node not in answered]
        for msg in accepted:
            self._partition_of[msg.metadata.src_node_id] = int(_partition_id(msg)[0])
        for bad in rejected:
            bad.partition_id = self._partition_of.get(bad.node_id)
            log.log(WARNING, "round %d: excluded client %s (%s): %s",
                    server_round, bad.client, bad.kind, bad.reason)
        accepted.sort(key=_partition_id)
        record.rejected = rejected
        record.clients = [_client_row(server_round, msg) for msg in accepted]
        if self.on_round is not None:
            self.on_round(record)
        if len(accepted) < self.min_accepted:
            raise RoundFailed(
                f"round {server_round}: {len(accepted)} of {len(self._asked)} clients returned "
                f"a usable update, {self.min_accepted} needed (fl.min_clients): "
                + (describe_failures(rejected) or "no client was asked"))
        return super().aggregate_train(server_round, accepted)  # type: ignore[misc]

    def evaluates(self, server_round: int) -> bool:
        """Whether clients evaluate the global model after ``server_round``."""
        return server_round % self.evaluate_every == 0 or server_round == self.last_round

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._eval_asked = []
        if not self.evaluates(server_round):
            return []
        started = time.perf_counter()
        messages = list(super().configure_evaluate(server_round, arrays, config, grid))  # type: ignore[misc]
        if messages:  # none when federated evaluation is off (fraction_evaluate = 0)
            self._eval_asked = [msg.metadata.dst_node_id for msg in messages]
            self.eval_rounds[server_round] = RoundRecord(server_round, started,
                                                         asked=len(messages))
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        replies = list(replies)
        record = self.eval_rounds.get(server_round)
        if record is None and not replies:  # no federated evaluation this round
            return super().aggregate_evaluate(server_round, replies)  # type: ignore[misc]
        if record is None:
            record = self.eval_rounds[server_round] = RoundRecord(server_round,
                                                                  time.perf_counter())
        record.replies_at = time.perf_counter()
        accepted: list[Message] = []
        rejected: list[Rejection] = []
        for msg in replies:
            verdict = screen_eval_reply(msg, self.weighted_by_key)
            if verdict is None:
                accepted.append(msg)
                self._partition_of[msg.metadata.src_node_id] = int(_partition_id(msg)[0])
            else:
                kind, reason = verdict
                rejected.append(Rejection(msg.metadata.src_node_id, reason, kind,
                                          _reported_partition(msg)))
        answered = {msg.metadata.src_node_id for msg in replies}
        rejected += [Rejection(node, "no reply within fl.timeout_s", "timeout")
                     for node in self._eval_asked if node not in answered]
        for bad in rejected:
            if bad.partition_id is None:
                bad.partition_id = self._partition_of.get(bad.node_id)
            if bad.kind != "skipped":
                log.log(WARNING, "round %d: evaluation of client %s left out (%s): %s",
                        server_round, bad.client, bad.kind, bad.reason)
        accepted.sort(key=_partition_id)
        record.rejected = rejected
        record.clients = [_eval_row(server_round, msg, self.weighted_by_key)
                          for msg in accepted]
        if self.on_evaluate is not None:
            self.on_evaluate(record)
        if not record.clients:
            return None
        return MetricRecord({name: stats["weighted_mean"]
                             for name, stats in score_distribution(record.clients).items()})


# Per-client bookkeeping: recorded per client, meaningless once averaged over clients.
_NOT_AVERAGED = (PARTITION_KEY, "handler-time", "divergence")


def _average_client_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted mean of every scalar metric the clients reported."""
    metrics = [next(iter(r.metric_records.values())) for r in records]
    weights = [float(m[weight_key]) for m in metrics]  # type: ignore[arg-type]
    total = sum(weights)
    averaged = MetricRecord()
    for m, w in zip(metrics, weights, strict=True):
        for key, value in m.items():
            if key == weight_key or key in _NOT_AVERAGED or not isinstance(value, int | float):
                continue
            averaged[key] = float(averaged.get(key, 0.0)) + float(value) * w / total
    return averaged


def _partition_id(msg: Message) -> tuple[float, int]:
    metrics = next(iter(msg.content.metric_records.values()))
    return float(metrics.get(PARTITION_KEY, 0)), msg.metadata.src_node_id


def _reported_partition(msg: Message) -> int | None:
    """The partition id a reply names, if it carries one."""
    if msg.has_error() or len(msg.content.metric_records) != 1:
        return None
    value = next(iter(msg.content.metric_records.values())).get(PARTITION_KEY)
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _eval_row(server_round: int, msg: Message, weight_key: str) -> dict[str, Any]:
    metrics = next(iter(msg.content.metric_records.values()))
    return {"round": server_round, PARTITION_KEY: int(metrics.get(PARTITION_KEY, -1)),
            "node_id": msg.metadata.src_node_id, weight_key: metrics[weight_key],
            **{k: v for k, v in metrics.items() if k not in EVAL_BOOKKEEPING}}


def _client_row(server_round: int, msg: Message) -> dict[str, Any]:
    metrics = next(iter(msg.content.metric_records.values()))
    return {"round": server_round, "node_id": msg.metadata.src_node_id, **dict(metrics)}
