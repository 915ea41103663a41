"""RepOptSGD: gradient re-parameterization, the optimizer half of RepOpt / FedRepOpt.

Ding et al., "Re-parameterizing Your Optimizers rather than Architectures" (ICLR 2023).
A CSLA block (constant-scale linear addition) computes
``s ⊙ (W * x) + s1 ⊙ (W1 * x) + d ⊙ x`` with constant per-channel ``s``, ``s1`` and a
trainable per-channel identity gain ``d``; it equals one conv with kernel
``W' = s·W + s1·pad(W1) + d·I``. With ``G = ∂L/∂W'``, plain SGD on the branches changes
``W'`` by ``−lr·(s²·G + s1²·G|centre + G|identity centre)``: the same as SGD on the single
kernel with its gradient multiplied entry-wise by

    M = s²  (+ s1² at the centre tap)  (+ 1 at the centre of the (i, i) diagonal)

(the identity term only where ``d`` exists: in == out and stride 1). RepOpt-Ghost is
the degenerate case without the 1×1 branch, on a depthwise kernel. So a plain model
trained with :class:`RepOptSGD` follows the multi-branch model's trajectory exactly,
without ever materialising its branches; FedRepOpt (Lau et al., ACCV 2024) uses this on
federated clients, whose devices then train what they deploy.

Weight decay is added after the multiplier, as in the reference code: decaying the
branches ``W``, ``W1`` and ``d`` by ``λ`` moves ``W'`` by exactly ``−lr·λ·W'``, and with
momentum the plain buffer stays the scale-weighted sum of the branch buffers, so the
equivalence is exact for SGD with momentum and weight decay too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from avfed.models.reparam import identity_kernel
from avfed.models.repopt_models import (
    RepOptConv2d,
    RepOptConvSpec,
    ScalesSource,
    as_scales,
    initialize_from_scales,
    resolve_scales,
)

__all__ = [
    "RepOptSGD",
    "build_repopt_optimizer",
    "decay_param_groups",
    "grad_multiplier",
    "initialize_from_scales",  # defined with the models, which must not import avfed.optim
]


def grad_multiplier(
    spec: RepOptConvSpec, scale_conv: torch.Tensor, scale_1x1: torch.Tensor | None = None
) -> torch.Tensor:
    """The gradient multiplier ``M`` of one RepOpt conv (shape of its weight)."""
    if spec.has_1x1 and scale_1x1 is None:
        raise ValueError("scale_1x1 is required for a conv with a 1×1 branch")
    k = spec.kernel_size
    shape = (spec.out_channels, spec.in_channels // spec.groups, k, k)
    mult = (scale_conv.reshape(-1, 1, 1, 1) ** 2).expand(shape).clone()
    if spec.has_1x1:
        mult[:, :, k // 2, k // 2] += (scale_1x1**2).reshape(-1, 1)
    if spec.has_identity:
        mult += identity_kernel(spec.out_channels, spec.groups, (k, k)).to(mult)
    return mult


class RepOptSGD(torch.optim.Optimizer):
    """SGD whose gradients are multiplied entry-wise by a fixed tensor per parameter.

    ``grad_multipliers`` maps parameters to tensors of their shape; parameters without
    one get plain SGD. The update follows the reference order: ``d = M ⊙ grad``, then
    ``d += weight_decay · p``, then momentum (``buf = momentum·buf + (1 − dampening)·d``,
    the first buffer being ``d``) and Nesterov as in ``torch.optim.SGD``, then
    ``p −= lr · d``. Multipliers live in the optimizer state, so they are saved with it.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        grad_multipliers: Mapping[torch.Tensor, torch.Tensor] | None = None,
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)
        optimised = {id(p) for group in self.param_groups for p in group["params"]}
        for param, mult in (grad_multipliers or {}).items():
            if id(param) not in optimised:
                raise ValueError("grad_multipliers holds a tensor that is not among the "
                                 "optimised parameters")
            if mult.shape != param.shape:
                raise ValueError(f"a grad multiplier of shape {tuple(mult.shape)} was given "
                                 f"for a parameter of shape {tuple(param.shape)}")
            self.state[param]["grad_multiplier"] = mult.detach().to(param).clone()

    @torch.no_grad()
    def step(self, closure: Any = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            dampening, weight_decay = group["dampening"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("RepOptSGD does not support sparse gradients")
                state = self.state[param]
                d_p = param.grad
                mult = state.get("grad_multiplier")
                if mult is not None:
                    d_p = d_p * mult
                if weight_decay != 0:
                    d_p = d_p.add(param, alpha=weight_decay)
                if momentum != 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
                    d_p = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
                param.add_(d_p, alpha=-lr)
        return loss


def decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split as the reference does: decay kernels, not norms or biases.

    Multi-dimensional weights decay; 1-D ones (BN affine terms, biases, branch scales)
    do not, except CSLA identity gains, which decay because they are kernel entries
    of ``W'`` (that is what keeps the CSLA ⇔ RepOpt equivalence exact under decay).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim > 1 or name.endswith("scale_identity"):
            decay.append(param)
        else:
            no_decay.append(param)
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_repopt_optimizer(
    model: nn.Module,
    scales: ScalesSource = None,
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 4e-5,
    nesterov: bool = False,
) -> RepOptSGD:
    """RepOptSGD over ``model``'s trainable parameters, multipliers from ``scales``.

    ``model`` may be a RepOpt target backbone or anything containing one (an SSL
    method). ``scales`` is a dict, a safetensors path, or ``None`` for the
    hyper-search's start values (the "no-search" default). Use the same scales the
    model was re-initialised with. Defaults are FedRepOpt's local SGD settings.
    """
    resolved = resolve_scales(model, as_scales(scales, model), RepOptConv2d)
    multipliers = {}
    for _, conv, branch in resolved:
        if conv.weight.requires_grad:
            weight = conv.weight  # square the scales in the weight's precision
            one_by_one = None if branch.one_by_one is None else branch.one_by_one.to(weight)
            multipliers[weight] = grad_multiplier(conv.spec, branch.conv.to(weight), one_by_one)
    return RepOptSGD(decay_param_groups(model, weight_decay), multipliers, lr=lr,
                     momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)

