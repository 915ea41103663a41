"""L-DAWA (Rehman et al., ICCV 2023): layer-wise divergence-aware weight aggregation.

Each client's tensor is scaled by its cosine similarity with the previous global tensor
before averaging, so layers that drifted away from the consensus count less. The rule
itself is :func:`avfed.fl.aggregation.ldawa`; this strategy adds the FedAvg warm-up
the authors' code uses (the first ``warmup_rounds`` rounds are plain FedAvg, while the
global model is still close to its random initialisation).

The default, 3, is the authors' boundary: their server switches to L-DAWA once the last
saved global round exceeds 2, so rounds 1–3 are FedAvg and round 4 is the first L-DAWA
round.
"""

from __future__ import annotations

from typing import Any

from avfed.fl.aggregation import State, ldawa, weighted_mean
from avfed.fl.strategies.registry import register_strategy
from avfed.fl.strategies.rule import RuleStrategy


class LDAWA(RuleStrategy):
    def __init__(self, *args: Any, warmup_rounds: int = 3, normalize: bool = False,
                 **kwargs: Any) -> None:
        if warmup_rounds < 0:
            raise ValueError(f"warmup_rounds must be >= 0, got {warmup_rounds}")
        super().__init__(*args, **kwargs)
        self.warmup_rounds = warmup_rounds
        self.normalize = normalize

    def combine(self, server_round: int, states: list[State], num_examples: list[float],
                losses: list[float], previous: State | None) -> State:
        if server_round <= self.warmup_rounds or previous is None:
            return weighted_mean(states, num_examples)
        return ldawa(states, previous, num_examples, normalize=self.normalize)


@register_strategy("ldawa", "L-DAWA: per-tensor cosine-to-global weighting after a FedAvg "
                            "warm-up; args: warmup_rounds=3, normalize=false")
def ldawa_strategy(**kwargs: Any) -> LDAWA:
    return LDAWA(**kwargs)
