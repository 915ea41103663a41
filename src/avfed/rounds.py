"""What happened in a round, whatever ran it: which clients delivered, which were left
out and why. Shared by the strategies (federated rounds), the central loop and the
reporter, so that both kinds of run are booked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# metrics every client row carries (a ClientApp reply, or the central loop's one row)
WEIGHT_KEY = "num-examples"
LOSS_KEY = "loss"
PARTITION_KEY = "partition-id"


@dataclass
class Rejection:
    """A client left out of a round: ``kind`` is ``error`` (it raised), ``timeout`` (no
    reply in time) or ``rejected`` (its update failed screening)."""

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
