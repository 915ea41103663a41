"""Momentum (EMA) targets and the helpers every SSL method's arguments share.

BYOL's target network and MoCo's key encoder are the same object: a frozen copy of
some online modules, moved towards them after every optimizer step. Whether it is
rebuilt from the received global weights each round or kept on the client is each
method's choice (``target_from_global``), so the copy lives here, apart from the
methods that use it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import nn

from avfed.ssl.base import SSLMethod


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule ``τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2``, held at 1 after K.

    ``total_steps = 0`` means no schedule: ``τ_base`` at every step. The target thus
    follows the online network closely early on and freezes as training ends.
    """
    if total_steps <= 0:
        return base
    progress = min(step, total_steps) / total_steps
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def check_momentum_args(momentum: float, schedule_steps: int) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"ssl.args.momentum must be in [0, 1), got {momentum}")
    if isinstance(schedule_steps, bool) or not isinstance(schedule_steps, int) \
            or schedule_steps < 0:
        raise ValueError("ssl.args.momentum_schedule_steps must be an integer >= 0 "
                         f"(0 = constant momentum), got {schedule_steps!r}")


def check_flag(name: str, value: object) -> bool:
    """Recipes are YAML: a quoted ``"false"`` would be truthy, so insist on a real bool."""
    if not isinstance(value, bool):
        raise ValueError(f"ssl.args.{name} must be true or false, got {value!r}")
    return value


class MomentumTarget(nn.Module):
    """An EMA copy of some online modules, applied in order as one network.

    ``step`` counts updates (it drives the cosine schedule) and ``synced`` records
    whether the copy was ever taken from received global weights; both are buffers so
    that a checkpoint, or a federated client's saved local state, carries them.
    Only parameters are averaged: the copy's batch-norm statistics are its own, as the
    target always runs in training mode on the current batch.
    """

    def __init__(self, online: Mapping[str, nn.Module], momentum: float,
                 schedule_steps: int = 0) -> None:
        super().__init__()
        check_momentum_args(momentum, schedule_steps)
        for name, module in online.items():
            self.add_module(name, copy.deepcopy(module))
        self.requires_grad_(False)
        self.base_momentum = momentum
        self.schedule_steps = schedule_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("synced", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x

    def current_momentum(self) -> float:
        return cosine_momentum(self.base_momentum, int(self.step), self.schedule_steps)

    def _pairs(self, online: Mapping[str, nn.Module]) -> list[tuple[nn.Module, nn.Module]]:
        names = [name for name, _ in self.named_children()]
        if list(online) != names:
            raise ValueError(f"momentum target holds {names}, got online modules {list(online)}")
        return [(getattr(self, name), online[name]) for name in names]

    @torch.no_grad()
    def update(self, online: Mapping[str, nn.Module]) -> None:
        """``θ_target ← τ·θ_target + (1 − τ)·θ_online``, then advance the schedule."""
        tau = self.current_momentum()
        for target, source in self._pairs(online):
            for t, o in zip(target.parameters(), source.parameters(), strict=True):
                t.mul_(tau).add_(o.detach(), alpha=1.0 - tau)
        self.step += 1

    @torch.no_grad()
    def copy_from(self, online: Mapping[str, nn.Module]) -> None:
        """Make the target an exact copy (parameters and buffers) of the online modules."""
        for target, source in self._pairs(online):
            target.load_state_dict(source.state_dict())
        self.synced.fill_(1)


class MomentumTargetMethod(SSLMethod):
    """An SSL method whose target network is an EMA of its online network.

    Subclasses set ``self.target`` and ``self.target_from_global`` and name their
    online modules in ``online_modules``. The target never leaves the client; what it
    starts a round from is a choice: ``target_from_global=False`` keeps the client's
    own target across rounds (built from the global weights the first time this client
    trains), ``True`` rebuilds it from the received global online weights every round.
    """

    target: MomentumTarget
    target_from_global: bool

    def online_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def after_step(self) -> None:
        self.target.update(self.online_modules())

    def load_shared_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_shared_state(state)
        if self.target_from_global or not bool(self.target.synced):
            self.target.copy_from(self.online_modules())


def shared_prefixes_for(heads: tuple[str, ...], share_heads: bool) -> tuple[str, ...]:
    """The backbone always; the heads too unless a recipe keeps them on the client."""
    return ("backbone.", *heads) if share_heads else ("backbone.",)
