"""Optimizers beyond torch's: RepOpt (gradient re-parameterization) for plain VGG/Ghost nets.

``build_repopt_optimizer(model, scales, lr, momentum, weight_decay)`` is the one call a
training loop needs; ``initialize_from_scales`` starts a target model where its
multi-branch twin would start. ``avfed.optim.hypersearch.hyper_search`` learns the
scales; it is not imported here, so that ``python -m avfed.optim.hypersearch`` does not
find its own module already loaded.
"""

from avfed.optim.csla import (
    ScaledBranches,
    branch_scales,
    build_csla_model,
    load_csla_into_target,
    set_branch_scales,
)
from avfed.optim.repopt import (
    RepOptSGD,
    build_repopt_optimizer,
    decay_param_groups,
    grad_multiplier,
    initialize_from_scales,
)
from avfed.optim.scales import default_scales, load_scales, save_scales

__all__ = [
    "RepOptSGD",
    "ScaledBranches",
    "branch_scales",
    "build_csla_model",
    "build_repopt_optimizer",
    "decay_param_groups",
    "default_scales",
    "grad_multiplier",
    "initialize_from_scales",
    "load_csla_into_target",
    "load_scales",
    "save_scales",
    "set_branch_scales",
]
