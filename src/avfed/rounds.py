"""What happened in a round, whatever ran it: which clients delivered, which were left
out and why. Shared by the strategies (federated rounds), the central loop and the
reporter, so that both kinds of run are booked the same way. A round of federated
evaluation is booked in the same record, and :func:`score_distribution` sums its
per-client scores up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# metrics every client row carries (a ClientApp reply, or the central loop's one row)
WEIGHT_KEY = "num-examples"
LOSS_KEY = "loss"
PARTITION_KEY = "partition-id"
# an evaluation reply from a client that holds no held-out examples (it is skipped)
NO_TEST_DATA_KEY = "no-test-data"
# keys of an evaluation reply that are bookkeeping, not scores
EVAL_BOOKKEEPING = (WEIGHT_KEY, PARTITION_KEY, NO_TEST_DATA_KEY)


@dataclass
class Rejection:
    """A client left out of a round: ``kind`` is ``error`` (it raised), ``timeout`` (no
    reply in time) or ``rejected`` (its update failed screening); in an evaluation
    round also ``skipped`` (it holds no held-out examples)."""

    node_id: int
    reason: str
    kind: str = "rejected"
    partition_id: int | None = None

    @property
    def client(self) -> str:
        """How logs name the client: its partition id when known, and its node id."""
        if self.partition_id is None:
            return f"node {self.node_id}"
        return f"{self.partition_id} (node {self.node_id})"


@dataclass
class RoundRecord:
    """One round: when it started and its replies were in, how many clients were asked,
    the rows of those that delivered and the clients left out."""

    server_round: int
    started: float
    replies_at: float = 0.0
    asked: int = 0
    clients: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def failures(self, kind: str) -> list[Rejection]:
        return [r for r in self.rejected if r.kind == kind]


def describe_failures(rejected: list[Rejection]) -> str:
    """The first reason of each kind with the ids of the clients it hit."""
    by_reason: dict[str, list[str]] = {}
    for bad in rejected:
        by_reason.setdefault(bad.reason, []).append(bad.client)
    return "; ".join(f"{reason} (client{'s' if len(ids) > 1 else ''} {', '.join(ids)})"
                     for reason, ids in by_reason.items())


def score_distribution(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """How each score of an evaluation round is spread over the clients that reported it.

    ``rows`` are per-client rows (``num-examples`` and the scores). Per score:
    ``weighted_mean`` (weighted by the client's examples: the score of the pooled test
    examples for a per-example score such as accuracy), ``mean`` (every client counts
    once), ``worst_10pct`` (the mean of the lowest-scoring tenth of the clients, at
    least one client), ``min`` and ``clients`` (how many clients reported it).
    """
    not_scores = (*EVAL_BOOKKEEPING, "round", "node_id", "status")
    names = list(dict.fromkeys(k for row in rows for k in row if k not in not_scores))
    out: dict[str, dict[str, float]] = {}
    for name in names:
        scored = [(float(r[name]), float(r[WEIGHT_KEY])) for r in rows if name in r]
        values = sorted(v for v, _ in scored)
        total = sum(w for _, w in scored)
        worst = values[: max(1, len(values) // 10)]  # the lowest decile
        out[name] = {
            "weighted_mean": sum(v * w for v, w in scored) / total,
            "mean": sum(values) / len(values),
            "worst_10pct": sum(worst) / len(worst),
            "min": values[0],
            "clients": len(values),
        }
    return out
