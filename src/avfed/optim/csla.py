"""The multi-branch twins of the RepOpt target models: CSLA and hyper-search forms.

Both replace each re-parameterizable conv of a target model with
:class:`ScaledBranches`, ``s ⊙ (W * x) [+ s1 ⊙ (W1 * x)] [+ d ⊙ x]``, followed by the
block's single BN. In the CSLA form ("constant-scale linear addition") ``s`` and ``s1``
are constant buffers: it is the model whose SGD trajectory RepOptSGD reproduces on the
plain kernel. In the hyper-search (HS) form they are trainable parameters; a short
supervised run on a small dataset sets them, and they are then frozen as the RepOpt
optimizer's constants. The identity gain ``d`` is trainable in both forms (it is the
identity branch's only weight), which is where the ``+1`` of the gradient multiplier
comes from.

Module paths coincide with the target's, so the scales of an HS model are read off
its state dict and a CSLA model's weights fold into a target key by key.
"""

from __future__ import annotations

import torch
from torch import nn

from avfed.models.reparam import identity_kernel, pad_kernel
from avfed.models.repopt_models import (
    RepOptConv2d,
    RepOptConvSpec,
    Scales,
    build_repopt_model,
    resolve_scales,
    scale_names,
)


def _per_out(scale: torch.Tensor) -> torch.Tensor:
    """A per-output-channel vector shaped to scale a conv kernel ``[out, in, kh, kw]``."""
    return scale.reshape(-1, 1, 1, 1)


class ScaledBranches(nn.Module):
    """One RepOpt conv as parallel branches with per-output-channel scales, no BN."""

    def __init__(self, spec: RepOptConvSpec, trainable_scales: bool = False) -> None:
        super().__init__()
        self.spec = spec
        k, out = spec.kernel_size, spec.out_channels
        self.conv = nn.Conv2d(spec.in_channels, out, k, spec.stride, k // 2,
                              groups=spec.groups, bias=False)
        self.conv_1x1 = (
            nn.Conv2d(spec.in_channels, out, 1, spec.stride, 0, groups=spec.groups, bias=False)
            if spec.has_1x1
            else None
        )
        start = torch.full((out,), spec.init_scale)
        self._register_scale("scale_conv", start, trainable_scales)
        self._register_scale("scale_1x1", start.clone() if spec.has_1x1 else None,
                             trainable_scales)
        self.scale_identity = nn.Parameter(torch.ones(out)) if spec.has_identity else None

    def _register_scale(self, name: str, value: torch.Tensor | None, trainable: bool) -> None:
        if trainable:
            self.register_parameter(name, None if value is None else nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    @staticmethod
    def _per_channel(scale: torch.Tensor) -> torch.Tensor:
        return scale.reshape(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._per_channel(self.scale_conv) * self.conv(x)
        if self.conv_1x1 is not None:
            out = out + self._per_channel(self.scale_1x1) * self.conv_1x1(x)
        if self.scale_identity is not None:
            out = out + self._per_channel(self.scale_identity) * x
        return out

    @torch.no_grad()
    def equivalent_kernel(self) -> torch.Tensor:
        """``W' = s·W + s1·pad(W1) + d·I``: the single kernel computing the same map."""
        weight = self.conv.weight
        kernel = _per_out(self.scale_conv) * weight
        if self.conv_1x1 is not None:
            kernel = kernel + _per_out(self.scale_1x1) * pad_kernel(self.conv_1x1.weight,
                                                                   weight.shape[-2:])
        if self.scale_identity is not None:
            eye = identity_kernel(self.spec.out_channels, self.spec.groups, weight.shape[-2:])
            kernel = kernel + _per_out(self.scale_identity) * eye.to(weight)
        return kernel


def build_csla_model(
    name: str,
    scales: Scales | None = None,
    trainable_scales: bool = False,
    in_chans: int = 3,
    stem_stride: int | None = None,
) -> nn.Module:
    """The multi-branch twin of the registered RepOpt model ``name``.

    ``trainable_scales=False`` gives the CSLA form, ``True`` the hyper-search form.
    ``scales`` (checked against the model) replace the search's start values.
    ``stem_stride=None`` is the registered model's default (2 as published, 1 for the
    ``tiny`` layouts), as in :func:`~avfed.models.repopt_models.build_repopt_model`.
    """
    model = build_repopt_model(
        name, lambda spec: ScaledBranches(spec, trainable_scales), in_chans, stem_stride
    )
    if scales is not None:
        set_branch_scales(model, scales)
    return model


@torch.no_grad()
def set_branch_scales(model: nn.Module, scales: Scales) -> None:
    """Copy ``scales`` into the branch scales of every :class:`ScaledBranches` of ``model``."""
    for _, module, branch in resolve_scales(model, scales, ScaledBranches):
        module.scale_conv.copy_(branch.conv)
        if branch.one_by_one is not None:
            module.scale_1x1.copy_(branch.one_by_one)
        if branch.identity is not None:
            module.scale_identity.copy_(branch.identity)


def branch_scales(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current branch scales of a CSLA / HS model, detached, as a scale dict."""
    scales = {}
    for name, module in model.named_modules():
        if isinstance(module, ScaledBranches):
            for kind in scale_names(module.spec):
                value = getattr(module, kind)
                scales[f"{name}.{kind}"] = value.detach().float().cpu().clone()
    if not scales:
        raise ValueError(f"{type(model).__name__} has no ScaledBranches; build it with "
                         "build_csla_model")
    return scales


@torch.no_grad()
def load_csla_into_target(target: nn.Module, csla: nn.Module) -> nn.Module:
    """Give ``target`` the function of ``csla``: fold each branch set into its conv.

    Every other tensor (BN, shortcuts, SE, stem) is copied by name; the two must have
    been built from the same architecture.
    """
    csla_state = csla.state_dict()
    slots = {name: m for name, m in csla.named_modules() if isinstance(m, ScaledBranches)}
    state = {}
    for key, value in target.state_dict().items():
        path, _, leaf = key.rpartition(".")
        if path in slots:
            if not isinstance(target.get_submodule(path), RepOptConv2d) or leaf != "weight":
                raise ValueError(f"'{path}' is a CSLA conv in one model but not a RepOpt "
                                 "conv in the other")
            state[key] = slots.pop(path).equivalent_kernel()
        elif key in csla_state and csla_state[key].shape == value.shape:
            state[key] = csla_state[key]
        else:
            raise ValueError(f"the CSLA model has no tensor matching the target's '{key}'; "
                             "were both built from the same architecture?")
    if slots:
        raise ValueError(f"the target has no RepOpt conv at {sorted(slots)[:3]}")
    target.load_state_dict(state)
    return target

