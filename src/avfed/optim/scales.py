"""Branch scales: the constants that tie a RepOpt target model to its multi-branch twin.

A scale dict maps ``"<conv path>.scale_conv"``, ``"<conv path>.scale_1x1"`` and
``"<conv path>.scale_identity"`` to per-output-channel vectors, ``<conv path>`` being a
re-parameterizable conv's module path inside the backbone (e.g. ``stage1.0.conv``).
These are exactly the state-dict names of the scales in the CSLA / hyper-search
models, so a searched model's scales are read off its state dict, and the dict
saves as-is to safetensors.

Convs are matched to keys by the longest suffix of their path, so scales searched on a
bare backbone also apply when the backbone sits inside an SSL method
(``backbone.stage1.0.conv``) or appears twice (an online and a momentum encoder).

The implementation lives in :mod:`avfed.models.repopt_models` (a target model reads its
scales when it is built, and models never import :mod:`avfed.optim`); this module keeps
the ``avfed.optim.scales`` names.
"""

from avfed.models.repopt_models import (
    BranchScales,
    Scales,
    ScalesSource,
    as_scales,
    default_scales,
    load_scales,
    repopt_slots,
    resolve_scales,
    save_scales,
    scale_names,
)

__all__ = [
    "BranchScales",
    "Scales",
    "ScalesSource",
    "as_scales",
    "default_scales",
    "load_scales",
    "repopt_slots",
    "resolve_scales",
    "save_scales",
    "scale_names",
]
