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

On a real federation nodes come and go. Before a round samples, the mixin waits at most
``node_wait_s`` (``fl.node_wait_s``) for ``min_available_nodes`` to be connected, then
samples among the nodes connected at that moment, so that neither training nor
evaluation ever waits without limit for a node that is gone; a node that joins or
rejoins (under a new node id) is sampled again from the next round on. A reply that
reports its node as unavailable (no heartbeat) is counted as ``lost``.

Resume: :meth:`ScreenedStrategyMixin.strategy_state` returns the server-side state an
interrupted run needs besides the global model (server-optimizer moments and momentum),
:meth:`~ScreenedStrategyMixin.load_strategy_state` puts it back, and
:meth:`~ScreenedStrategyMixin.start` takes ``first_round`` to continue from there.

Federated evaluation (``fl.federated_eval``) is screened the same way but never stops
a run: in the rounds :meth:`ScreenedStrategyMixin.evaluates` names, the clients asked
score the global model on their own held-out data; replies that carry an error, a
non-finite score or no example count, clients without held-out data and clients that
did not answer are left out and counted, and the per-client rows go to ``on_evaluate``.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log as flower_log
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

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
from avfed.seeding import derive_seed

log = get_logger(__name__)


class RoundFailed(RuntimeError):
    """Too few clients of a round produced a usable update; the run cannot go on."""


# Server-side state of Flower's strategies that a resumed run must restore: FedOpt's
# (FedAdam, FedYogi, FedAdagrad) moments and the model they are taken against, FedAvgM's
# momentum and current model. Rules that read the previous global model (FedVSSL's SWA,
# L-DAWA) get it from the global model the run resumes with.
RESUMABLE_ATTRIBUTES = ("current_arrays", "m_t", "v_t", "momentum_vector")
# how long between two looks at the connected nodes while waiting for more
NODE_POLL_S = 1.0


class _ConnectedNodes:
    """A grid whose node list is fixed to the nodes connected when a round samples.

    Flower's sampling waits, without a time limit, until ``min_available_nodes`` are
    connected; given this view after :meth:`ScreenedStrategyMixin._wait_for_nodes` (and
    minimums clamped to its size) it samples at once among the nodes that are there.
    """

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid, self._node_ids = grid, node_ids

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


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
        # message id → the node it was sent to: the SuperLink answers for a lost node
        # with an error reply from itself, which names the node only by the message
        self._sent: list[Message] = []
        self._partition_of: dict[int, int] = {}  # node id → partition id, once known
        self.previous_global: ArrayRecord | None = None
        # federated evaluation: the rounds it runs in (every evaluate_every-th and the
        # last), where its per-client rows go, and what each round asked and got
        self.evaluate_every = 1
        self.last_round: int | None = None
        self.on_evaluate: Callable[[RoundRecord], None] | None = None
        self.eval_rounds: dict[int, RoundRecord] = {}
        self._eval_asked: list[int] = []
        # real federations: the bounded wait for nodes, and the reply time limit (logs)
        self.node_wait_s = 120.0
        self.timeout_s: float | None = None
        self.sampling_seed = 0  # the run's seed: which clients train when only some do

    def _wait_for_nodes(self, grid: Grid, server_round: int) -> list[int]:
        """The nodes connected once ``min_available_nodes`` are, or ``node_wait_s`` passed.

        Raises :class:`RoundFailed` when fewer than ``min_accepted`` are connected then:
        no round could produce the updates the run asks for.
        """
        wanted = int(getattr(self, "min_available_nodes", 1))
        nodes = list(grid.get_node_ids())
        if len(nodes) >= wanted:
            return nodes
        started = time.monotonic()
        flower_log(INFO, "round %d: waiting up to %.0f s (fl.node_wait_s) for %d nodes, "
                   "%d connected", server_round, self.node_wait_s, wanted, len(nodes))
        while len(nodes) < wanted and time.monotonic() - started < self.node_wait_s:
            time.sleep(min(NODE_POLL_S, max(0.0, self.node_wait_s
                                             - (time.monotonic() - started))))
            nodes = list(grid.get_node_ids())
        if len(nodes) < self.min_accepted:
            raise RoundFailed(
                f"round {server_round}: {len(nodes)} node(s) connected after waiting "
                f"{self.node_wait_s:g} s (fl.node_wait_s), {self.min_accepted} needed "
                "(fl.min_clients)")
        if len(nodes) < wanted:
            log.log(WARNING, "round %d: %d of %d nodes connected after %.0f s "
                    "(fl.node_wait_s); going ahead with them", server_round, len(nodes),
                    wanted, time.monotonic() - started)
        return nodes

    def _sample_from(self, grid: Grid, nodes: list[int], configure: Callable[[Grid], Any],
                     minimums: tuple[str, ...]) -> list[Message]:
        """``configure(grid)`` with the grid fixed to ``nodes`` and Flower's minimum node
        counts clamped to how many there are, so that its sampling cannot block."""
        if not nodes:  # none connected (evaluation does not wait): nobody to ask
            return []
        saved = {name: getattr(self, name) for name in minimums if hasattr(self, name)}
        try:
            for name, value in saved.items():
                setattr(self, name, max(1, min(int(value), len(nodes))))
            return list(configure(_ConnectedNodes(grid, nodes)))  # type: ignore[arg-type]
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def _choose_nodes(self, grid: Grid, nodes: list[int], server_round: int) -> list[int]:
        """The nodes that train this round, when only some of them are to (fl.fraction_train
        < 1): drawn by a generator seeded from the run's seed and the round, over the nodes
        ordered by the partition they hold. Flower draws from its node ids, which are random
        on every run, so the same seed would train different clients each time."""
        wanted = max(int(len(nodes) * float(getattr(self, "fraction_train", 1.0))),
                     int(getattr(self, "min_train_nodes", 1)))
        if wanted >= len(nodes):
            return nodes
        self._learn_partitions(grid, nodes)
        ordered = sorted(nodes, key=lambda node: (self._partition_of.get(node, math.inf), node))
        draw = random.Random(derive_seed(self.sampling_seed, server_round, 0))
        return draw.sample(ordered, wanted)

    def _learn_partitions(self, grid: Grid, nodes: list[int]) -> None:
        """Ask the nodes whose partition is not known yet which one they hold (a query
        message, answered from the node's config without training); a node that does not
        answer is ordered after the others, by its id."""
        unknown = [node for node in nodes if node not in self._partition_of]
        if not unknown:
            return
        questions = [Message(RecordDict(), message_type=MessageType.QUERY, dst_node_id=node)
                     for node in unknown]
        for reply in grid.send_and_receive(questions, timeout=self.timeout_s):
            partition = _reported_partition(reply)
            if partition is not None:
                self._partition_of[reply.metadata.src_node_id] = partition

    def _no_reply_reason(self) -> str:
        limit = f"={self.timeout_s:g} s" if self.timeout_s is not None else ""
        return f"no reply within fl.timeout_s{limit}"

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
        nodes = self._choose_nodes(grid, self._wait_for_nodes(grid, server_round), server_round)
        messages = self._sample_from(
            grid, nodes,
            lambda view: super(ScreenedStrategyMixin, self).configure_train(  # type: ignore[misc]
                server_round, arrays, config, view),
            ("min_available_nodes", "min_train_nodes"))
        self._asked = [msg.metadata.dst_node_id for msg in messages]
        self._sent = messages
        self.rounds[server_round].asked = len(messages)
        return messages

    def _origin(self, reply: Message) -> int:
        """The node a reply is about: its sender, or for an error the SuperLink sends on
        a node's behalf, the node the original message went to."""
        sent = {msg.metadata.message_id: msg.metadata.dst_node_id for msg in self._sent
                if msg.metadata.message_id}
        return sent.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        now = time.perf_counter()
        record = self.rounds.setdefault(server_round, RoundRecord(server_round, now))
        record.replies_at = now
        replies = list(replies)
        accepted, rejected = screen_replies(replies, self._expected, self.weighted_by_key)
        failing = [msg for msg in replies if not any(msg is ok for ok in accepted)]
        for bad, msg in zip(rejected, failing, strict=True):  # both in reply order
            bad.node_id = self._origin(msg)
        _mark_lost(rejected, replies, self._origin)
        answered = {self._origin(msg) for msg in replies}
        rejected += [Rejection(node, self._no_reply_reason(), "timeout")
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
        _keep_shared_metrics(accepted)
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
        # no waiting here: the nodes connected now score the model the round just made
        messages = self._sample_from(
            grid, list(grid.get_node_ids()),
            lambda view: super(ScreenedStrategyMixin, self).configure_evaluate(  # type: ignore[misc]
                server_round, arrays, config, view),
            ("min_available_nodes", "min_evaluate_nodes"))
        if messages:  # none when federated evaluation is off (fraction_evaluate = 0)
            self._eval_asked = [msg.metadata.dst_node_id for msg in messages]
            self._sent = messages
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
                rejected.append(Rejection(self._origin(msg), reason, kind,
                                          _reported_partition(msg)))
        _mark_lost(rejected, replies, self._origin)
        answered = {self._origin(msg) for msg in replies}
        rejected += [Rejection(node, self._no_reply_reason(), "timeout")
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


    # ---- resume ---------------------------------------------------------------------

    def strategy_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, description)``: the server-side state a resumed run restores.

        ``arrays`` maps ``attribute/key`` to a numpy array; ``description`` (JSON) says
        how each attribute was held (a dict, a list or an ArrayRecord) and its keys.
        """
        arrays: dict[str, np.ndarray] = {}
        described: dict[str, Any] = {}
        for name in RESUMABLE_ATTRIBUTES:
            value = getattr(self, name, None)
            if value is None:
                continue
            if isinstance(value, ArrayRecord):
                kind, items = "arrayrecord", [(k, a.numpy()) for k, a in value.items()]
            elif isinstance(value, dict):
                kind, items = "dict", list(value.items())
            elif isinstance(value, list):
                kind, items = "list", [(str(i), v) for i, v in enumerate(value)]
            else:
                raise TypeError(f"cannot save strategy attribute '{name}' of type "
                                f"{type(value).__name__}")
            described[name] = {"kind": kind, "keys": [k for k, _ in items]}
            arrays.update({f"{name}/{k}": np.asarray(v) for k, v in items})
        return arrays, described

    def load_strategy_state(self, arrays: dict[str, np.ndarray],
                            described: dict[str, Any]) -> None:
        """Put back what :meth:`strategy_state` returned."""
        from flwr.app import Array

        for name, how in described.items():
            if name not in RESUMABLE_ATTRIBUTES or not hasattr(self, name):
                raise ValueError(f"the saved strategy state holds '{name}', which "
                                 f"{type(self).__name__} does not keep")
            items = [(k, arrays[f"{name}/{k}"]) for k in how["keys"]]
            if how["kind"] == "arrayrecord":
                value: Any = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in items})
            elif how["kind"] == "dict":
                value = dict(items)
            else:
                value = [v for _, v in items]
            setattr(self, name, value)

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
              first_round: int = 1) -> Result:
        """Flower's round loop; ``first_round > 1`` continues an interrupted run, whose
        global model after round ``first_round - 1`` is ``initial_arrays``."""
        self.timeout_s = timeout
        if first_round <= 1:
            return super().start(  # type: ignore[misc]
                grid=grid, initial_arrays=initial_arrays, num_rounds=num_rounds,
                timeout=timeout, train_config=train_config, evaluate_config=evaluate_config,
                evaluate_fn=evaluate_fn)
        # The same steps as Flower's Strategy.start, from a later round and without the
        # initial evaluation (the interrupted run made it).
        flower_log(INFO, "Resuming %s at round %d of %d", type(self).__name__, first_round,
                   num_rounds)
        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        result, arrays = Result(), initial_arrays
        result.arrays = arrays
        for current_round in range(first_round, num_rounds + 1):
            flower_log(INFO, "[ROUND %s/%s]", current_round, num_rounds)
            replies = grid.send_and_receive(
                messages=self.configure_train(current_round, arrays, train_config, grid),
                timeout=timeout)
            new_arrays, train_metrics = self.aggregate_train(current_round, replies)
            if new_arrays is not None:
                result.arrays = arrays = new_arrays
            if train_metrics is not None:
                result.train_metrics_clientapp[current_round] = train_metrics
            replies = grid.send_and_receive(
                messages=self.configure_evaluate(current_round, arrays, evaluate_config,
                                                 grid),
                timeout=timeout)
            eval_metrics = self.aggregate_evaluate(current_round, replies)
            if eval_metrics is not None:
                result.evaluate_metrics_clientapp[current_round] = eval_metrics
            if evaluate_fn:
                scores = evaluate_fn(current_round, arrays)
                if scores is not None:
                    result.evaluate_metrics_serverapp[current_round] = scores
        for line in io.StringIO(str(result)):
            flower_log(INFO, "\t%s", line.strip("\n"))
        return result


def _mark_lost(rejected: list[Rejection], replies: list[Message],
               origin: Callable[[Message], int]) -> None:
    """Errors that say the node stopped sending heartbeats become ``lost``."""
    lost = {origin(msg) for msg in replies
            if msg.has_error() and msg.error.code == ErrorCode.NODE_UNAVAILABLE}
    for bad in rejected:
        if bad.node_id in lost:
            bad.kind = "lost"
            bad.reason = "node lost: it stopped sending heartbeats"


# Per-client bookkeeping: recorded per client, meaningless once averaged over clients.
_NOT_AVERAGED = (PARTITION_KEY, "handler-time", "divergence")


def _keep_shared_metrics(replies: list[Message]) -> None:
    """Flower aggregates only replies whose metric records have the same keys, but a
    client may report one the others do not: FedU's and FedEMA's divergence exists only
    once a client holds a local model from an earlier round, so with client sampling a
    round mixes clients that have one with first-timers. Every reply has been booked per
    client by now (``clients.csv``), so only the keys they all share go on to the
    average."""
    records = [next(iter(msg.content.metric_records.values())) for msg in replies]
    if not records:
        return
    shared = set.intersection(*(set(record.keys()) for record in records))
    for record in records:
        for key in [k for k in record.keys() if k not in shared]:
            del record[key]


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
