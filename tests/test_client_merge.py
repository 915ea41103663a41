"""Client-side update rules: partial update, FedEMA, FedU, FedProx's proximal term."""

import math

import pytest
import torch

from avfed.fl.client_merge import (
    divergence,
    ema_merge,
    merge_global,
    needs_local_state,
    proximal_regularizer,
)

LOCAL = {"backbone.w": torch.tensor([1.0, 2.0]), "head.w": torch.tensor([5.0]),
         "predictor.w": torch.tensor([7.0])}
GLOBAL = {"backbone.w": torch.tensor([4.0, 6.0]), "head.w": torch.tensor([0.0]),
          "predictor.w": torch.tensor([1.0])}


def test_replace_is_the_default_and_the_first_round_always_replaces():
    assert merge_global(LOCAL, GLOBAL, {}, first_round=False) is GLOBAL
    assert not needs_local_state({})
    cfg = {"client-update": "partial", "partial-update-prefixes": "backbone."}
    assert merge_global(LOCAL, GLOBAL, cfg, first_round=True) is GLOBAL
    assert needs_local_state(cfg)


def test_partial_update_keeps_the_heads_local():
    cfg = {"client-update": "partial", "partial-update-prefixes": "backbone."}
    out = merge_global(LOCAL, GLOBAL, cfg, first_round=False)
    assert torch.equal(out["backbone.w"], GLOBAL["backbone.w"])
    assert torch.equal(out["head.w"], LOCAL["head.w"])
    assert torch.equal(out["predictor.w"], LOCAL["predictor.w"])


def test_fedema_auto_scales_lambda_so_the_first_mu_is_tau():
    dist = math.sqrt(3**2 + 4**2 + 5**2 + 6**2)  # ‖w_g − w_k‖ over all shared tensors
    assert divergence(LOCAL, GLOBAL, list(GLOBAL)) == pytest.approx(dist)
    memory: dict[str, float] = {}
    cfg = {"client-update": "fedema", "fedema-tau": 0.7}
    out = merge_global(LOCAL, GLOBAL, cfg, first_round=False, memory=memory)
    assert memory["fedema-lambda"] == pytest.approx(0.7 / dist)
    expected = ema_merge(LOCAL, GLOBAL, 0.7)
    for k in GLOBAL:
        assert torch.allclose(out[k], expected[k])
    assert torch.allclose(out["backbone.w"], 0.7 * LOCAL["backbone.w"] + 0.3 * GLOBAL["backbone.w"])
    # a fixed λ with a large divergence saturates μ at 1: the client keeps its own model
    out = merge_global(LOCAL, GLOBAL, {"client-update": "fedema", "fedema-lambda": 10.0},
                       first_round=False)
    assert torch.equal(out["backbone.w"], LOCAL["backbone.w"])


def test_fedu_updates_the_predictor_only_below_the_divergence_threshold():
    online_dist = math.sqrt(3**2 + 4**2 + 5**2)  # predictor excluded
    near = {"client-update": "fedu", "fedu-threshold": online_dist + 0.1}
    far = {"client-update": "fedu", "fedu-threshold": online_dist - 0.1}
    out_near = merge_global(LOCAL, GLOBAL, near, first_round=False)
    out_far = merge_global(LOCAL, GLOBAL, far, first_round=False)
    for out in (out_near, out_far):  # the online network always follows the global one
        assert torch.equal(out["backbone.w"], GLOBAL["backbone.w"])
    assert torch.equal(out_near["predictor.w"], GLOBAL["predictor.w"])
    assert torch.equal(out_far["predictor.w"], LOCAL["predictor.w"])


def test_unknown_rule_is_rejected():
    with pytest.raises(KeyError, match="unknown client merge rule 'magic'"):
        merge_global(LOCAL, GLOBAL, {"client-update": "magic"}, first_round=False)


def test_proximal_term_gradient_is_mu_times_the_distance_to_global():
    model = torch.nn.Linear(3, 2)
    global_state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    term = proximal_regularizer(model, global_state, {"proximal-mu": 0.5})  # type: ignore[arg-type]
    assert term is not None
    term().backward()
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, 0.5 * (param.detach() - global_state[name]), atol=1e-6)
    assert proximal_regularizer(model, global_state, {}) is None  # type: ignore[arg-type]
