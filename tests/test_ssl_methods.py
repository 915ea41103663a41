import math
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard

from avfed import models, ssl
from avfed.config import TrainConfig
from avfed.ssl.byol import BYOL
from avfed.ssl.losses import (
    barlow_twins_loss,
    cross_correlation,
    info_nce_with_queue,
    negative_cosine,
    normalized_mse,
)
from avfed.ssl.moco import MoCoV2
from avfed.ssl.momentum import cosine_momentum
from avfed.ssl.simsiam import SimSiam
from avfed.training import train_ssl

METHODS = ["byol", "simsiam", "moco_v2", "barlow_twins"]
TINY = {"moco_v2": {"queue_size": 64}}


def tiny_method(name: str, **kwargs: object) -> ssl.SSLMethod:
    backbone = models.create("resnet10_cifar", in_chans=1, width=8)
    return ssl.create(name, backbone, projection_dim=16, hidden_dim=32,
                      **{**TINY.get(name, {}), **kwargs})


def noisy_views(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return (x + 0.1 * torch.randn(x.shape, generator=g),
            x + 0.1 * torch.randn(x.shape, generator=g))


def prefixes(keys: Iterable[str]) -> set[str]:
    return {k.split(".")[0] for k in keys}


# --- losses ---------------------------------------------------------------------------

def test_regression_losses_are_cosine_based_with_each_papers_scale():
    torch.manual_seed(0)
    p, z = torch.randn(6, 5), torch.randn(6, 5)
    assert torch.allclose(normalized_mse(p, z), 2 + 2 * negative_cosine(p, z), atol=1e-6)
    assert torch.isclose(negative_cosine(p, 3 * p), torch.tensor(-1.0), atol=1e-6)
    assert torch.isclose(negative_cosine(p, -p), torch.tensor(1.0), atol=1e-6)
    assert torch.isclose(normalized_mse(p, -2 * p), torch.tensor(4.0), atol=1e-5)
    with pytest.raises(ValueError, match="negative_cosine expects two \\[N, D\\]"):
        negative_cosine(p, z[:5])


def test_info_nce_with_queue_equals_log_k_plus_1_when_everything_coincides():
    k = 37
    z = torch.ones(4, 8)
    loss = info_nce_with_queue(z, z, torch.ones(k, 8), temperature=0.07)
    assert abs(loss.item() - math.log(k + 1)) < 1e-5


def test_info_nce_with_queue_prefers_the_true_key_and_checks_the_queue():
    torch.manual_seed(0)
    q, queue = torch.randn(8, 16), torch.randn(32, 16)
    matched = info_nce_with_queue(q, q + 0.05 * torch.randn_like(q), queue)
    shuffled = info_nce_with_queue(q, q[torch.randperm(8)], queue)
    assert matched < shuffled
    with pytest.raises(ValueError, match="queue \\[K, 16\\]"):
        info_nce_with_queue(q, q, torch.randn(32, 15))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce_with_queue(q, q, queue, temperature=0.0)


def test_barlow_twins_loss_vanishes_for_identical_decorrelated_embeddings():
    # columns of a Hadamard matrix (all-ones column dropped): zero mean, unit variance,
    # mutually orthogonal, so C is the identity
    z = torch.tensor(hadamard(8)[:, 1:5], dtype=torch.float32)
    assert barlow_twins_loss(z, z).item() < 1e-6
    assert barlow_twins_loss(z, z + 0.5 * torch.randn_like(z)).item() > 0.01


def test_barlow_twins_terms_match_pearson_correlations_on_a_hand_made_batch():
    # per-dimension correlations between the views: +1, 0 and −1
    z1 = torch.tensor([[1.0, 1, 1], [-1, 0, 1], [0, -1, -1], [0, 0, -1]])
    z2 = torch.tensor([[2.0, 0, -1], [-2, 1, -1], [0, 0, 1], [0, -1, 1]])
    pearson = np.corrcoef(z1.T.numpy(), z2.T.numpy())[:3, 3:]
    on_diagonal = float(((1 - np.diag(pearson)) ** 2).sum())
    off_diagonal = float((pearson**2).sum() - (np.diag(pearson) ** 2).sum())
    assert abs(on_diagonal - 5.0) < 1e-9  # (1 − 1)² + (1 − 0)² + (1 + 1)²
    assert torch.allclose(cross_correlation(z1, z2), torch.tensor(pearson, dtype=torch.float32),
                          atol=1e-4)
    assert abs(barlow_twins_loss(z1, z2, lambda_offdiag=0.0).item() - on_diagonal) < 1e-3
    assert abs(barlow_twins_loss(z1, z2, lambda_offdiag=1.0).item()
               - on_diagonal - off_diagonal) < 1e-3


def test_barlow_twins_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        barlow_twins_loss(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(ValueError, match="lambda_offdiag must be >= 0"):
        barlow_twins_loss(torch.randn(4, 4), torch.randn(4, 4), lambda_offdiag=-1.0)


# --- training -------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_loss_falls_over_twenty_adam_steps(name):
    torch.manual_seed(0)
    if name == "moco_v2":
        # a fixed batch would fill the queue with its own keys, each example's older
        # keys then acting as its negatives; cycle four batches through a queue that
        # holds the previous batch's keys, and skip the first step, whose negatives are
        # the queue's random initial vectors
        method = tiny_method(name, queue_size=32)
        view1, view2 = noisy_views(64)
        batches = [(view1[i:i + 16], view2[i:i + 16]) for i in range(0, 64, 16)]
        skip = 1
    else:
        method = tiny_method(name)
        batches, skip = [noisy_views()], 0
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(20):
        loss = method.training_loss(*batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[skip:skip + 3]), np.mean(losses[-3:])
    assert last < first - 0.02 * abs(first)


def test_train_ssl_drives_the_moco_queue_through_after_step_and_enqueue():
    torch.manual_seed(0)
    method = tiny_method("moco_v2", queue_size=24)
    start = method.target.backbone.stages[0][0].conv1.weight.clone()

    class Jitter(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 0.1 * torch.randn_like(x)

    cfg = TrainConfig(local_epochs=1, batch_size=8, lr=1e-3)
    result = train_ssl(method, torch.rand(24, 1, 8, 8), Jitter(), cfg)
    assert result.steps == 3
    assert int(method.queue_ptr) == (3 * 2 * 8) % 24  # symmetric: two keys per example
    assert int(method.target.step) == 3
    assert not torch.equal(method.target.backbone.stages[0][0].conv1.weight, start)


# --- SimSiam --------------------------------------------------------------------------

def test_simsiam_gradient_reaches_projections_only_through_the_predictor():
    torch.manual_seed(0)
    method = tiny_method("simsiam")
    projections: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    method.projector.register_forward_hook(lambda m, i, out: projections.append(out))
    method.predictor.register_forward_hook(lambda m, i, out: predictions.append(out))
    loss = method.training_loss(*noisy_views(8))
    z1, z2 = projections
    p1, p2 = predictions
    total = torch.autograd.grad(loss, [z1, z2, p1, p2], retain_graph=True)
    via_predictor = [torch.autograd.grad(p, z, g, retain_graph=True)[0]
                     for p, z, g in ((p1, z1, total[2]), (p2, z2, total[3]))]
    # with a stop-gradient the target role of z adds nothing to its gradient
    assert torch.allclose(total[0], via_predictor[0], atol=1e-7)
    assert torch.allclose(total[1], via_predictor[1], atol=1e-7)
    assert total[0].abs().sum() > 0


def test_simsiam_symmetric_loss_sends_no_gradient_to_the_targets():
    torch.manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(4, 6, requires_grad=True) for _ in range(4))
    SimSiam.symmetric_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p1.grad.abs().sum() > 0


# --- BYOL -----------------------------------------------------------------------------

def test_byol_target_takes_no_gradient_and_follows_the_ema_formula():
    torch.manual_seed(0)
    method = tiny_method("byol", momentum=0.9)
    assert isinstance(method, BYOL)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.training_loss(*noisy_views(8)).backward()
    target_params = list(method.target.parameters())
    assert target_params and all(not p.requires_grad and p.grad is None for p in target_params)
    assert method.backbone.stages[0][0].conv1.weight.grad is not None
    optimizer.step()
    before = [p.detach().clone() for p in target_params]
    online = [p.detach().clone() for m in method.online_modules().values()
              for p in m.parameters()]
    assert any(not torch.equal(t, o) for t, o in zip(before, online, strict=True))
    method.after_step()
    for new, old, o in zip(method.target.parameters(), before, online, strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * o, atol=1e-7)
    assert int(method.target.step) == 1


def test_cosine_momentum_schedule_runs_from_base_to_one():
    assert cosine_momentum(0.99, 0, 100) == 0.99
    assert abs(cosine_momentum(0.99, 50, 100) - 0.995) < 1e-12
    assert cosine_momentum(0.99, 100, 100) == 1.0
    assert cosine_momentum(0.99, 500, 100) == 1.0
    assert cosine_momentum(0.99, 500, 0) == 0.99
    method = tiny_method("byol", momentum=0.9, momentum_schedule_steps=4)
    method.target.step.fill_(2)
    assert abs(method.target.current_momentum() - 0.95) < 1e-12


def _perturbed(state: dict[str, torch.Tensor], by: float) -> dict[str, torch.Tensor]:
    return {k: v + by if v.is_floating_point() else v for k, v in state.items()}


def _target_matches_online(method: BYOL | MoCoV2) -> bool:
    online = {f"{name}.{k}": v for name, m in method.online_modules().items()
              for k, v in m.state_dict().items()}
    target = {k: v for k, v in method.target.state_dict().items() if k not in {"step", "synced"}}
    return online.keys() == target.keys() and all(
        torch.equal(online[k], target[k]) for k in online)


def test_byol_keeps_its_target_local_after_the_first_global_weights():
    torch.manual_seed(0)
    method = tiny_method("byol")
    method.load_shared_state(_perturbed(method.shared_state(), 0.5))
    assert _target_matches_online(method) and int(method.target.synced) == 1
    kept = {k: v.clone() for k, v in method.target.state_dict().items()}
    method.load_shared_state(_perturbed(method.shared_state(), 0.5))
    assert not _target_matches_online(method)
    assert all(torch.equal(kept[k], v) for k, v in method.target.state_dict().items())


@pytest.mark.parametrize("name,kwargs", [("byol", {"target_from_global": True}),
                                         ("moco_v2", {})])
def test_target_rebuilt_from_global_weights_every_round(name, kwargs):
    torch.manual_seed(0)
    method = tiny_method(name, **kwargs)
    for _ in range(2):
        method.load_shared_state(_perturbed(method.shared_state(), 0.5))
        assert _target_matches_online(method)


# --- MoCo -----------------------------------------------------------------------------

def _captured_keys(method: MoCoV2) -> list[torch.Tensor]:
    keys: list[torch.Tensor] = []
    method.target.register_forward_hook(
        lambda m, i, out: keys.append(torch.nn.functional.normalize(out, dim=1)))
    return keys


@pytest.mark.parametrize("symmetric,queue_size,steps", [(False, 10, 3), (True, 3, 2)])
def test_moco_queue_is_a_ring_of_the_latest_keys(symmetric, queue_size, steps):
    torch.manual_seed(0)
    method = tiny_method("moco_v2", queue_size=queue_size, symmetric=symmetric)
    assert isinstance(method, MoCoV2)
    keys = _captured_keys(method)
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    for step in range(steps):
        method.training_loss(*noisy_views(4, seed=step)).backward()
        optimizer.step()
        method.after_step()
        assert method.queue.shape == (queue_size, 16)
    per_step = 8 if symmetric else 4
    ptr = int(method.queue_ptr)
    assert ptr == steps * per_step % queue_size
    newest = torch.cat(keys)[-queue_size:]  # oldest first
    in_order = method.queue[(ptr + torch.arange(queue_size)) % queue_size]
    assert torch.allclose(in_order, newest, atol=1e-6)


def test_moco_queue_is_left_alone_in_eval_mode():
    torch.manual_seed(0)
    method = tiny_method("moco_v2", queue_size=8).eval()
    queue = method.queue.clone()
    method.training_loss(*noisy_views(4))
    assert torch.equal(method.queue, queue) and int(method.queue_ptr) == 0


def test_local_state_travels_in_state_dict():
    torch.manual_seed(0)
    method = tiny_method("moco_v2", queue_size=12)
    method.training_loss(*noisy_views(4))
    method.after_step()
    restored = tiny_method("moco_v2", queue_size=12)
    assert not torch.equal(restored.queue, method.queue)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.queue, method.queue)
    assert int(restored.queue_ptr) == int(method.queue_ptr) == 8
    assert int(restored.target.step) == 1


# --- what is shared -------------------------------------------------------------------

@pytest.mark.parametrize("name,shared,local", [
    ("byol", {"backbone", "projector", "predictor"}, {"target"}),
    ("simsiam", {"backbone", "projector", "predictor"}, set()),
    ("moco_v2", {"backbone", "projector"}, {"target", "queue", "queue_ptr"}),
    ("barlow_twins", {"backbone", "projector"}, set()),
    ("simclr", {"backbone", "projector"}, set()),
])
def test_shared_state_holds_exactly_the_documented_parts(name, shared, local):
    method = tiny_method(name)
    everything = method.state_dict()
    sent = method.shared_state()
    assert prefixes(sent) == shared
    assert prefixes(everything.keys() - sent.keys()) == local
    backbone_only = tiny_method(name, share_heads=False).shared_state()
    assert prefixes(backbone_only) == {"backbone"}


# --- arguments ------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,match", [
    ("byol", {"momentum": 1.0}, "ssl.args.momentum must be in \\[0, 1\\)"),
    ("byol", {"momentum": -0.1}, "ssl.args.momentum must be in"),
    ("byol", {"momentum_schedule_steps": -1}, "ssl.args.momentum_schedule_steps"),
    ("byol", {"target_from_global": "false"}, "ssl.args.target_from_global must be true or"),
    ("moco_v2", {"queue_size": 0}, "ssl.args.queue_size must be an integer >= 1"),
    ("moco_v2", {"queue_size": 16.5}, "ssl.args.queue_size"),
    ("moco_v2", {"temperature": 0.0}, "ssl.args.temperature must be > 0"),
    ("moco_v2", {"symmetric": 1}, "ssl.args.symmetric must be true or false"),
    ("simsiam", {"predictor_hidden_dim": 0}, "ssl.args.predictor_hidden_dim"),
    ("barlow_twins", {"lambda_offdiag": -1e-3}, "ssl.args.lambda_offdiag must be >= 0"),
    ("barlow_twins", {"share_heads": None}, "ssl.args.share_heads must be true or false"),
])
def test_bad_args_raise_naming_the_argument(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_method(name, **kwargs)


def test_methods_are_registered():
    assert set(METHODS) <= set(ssl.list_methods())


def test_docs_snippets_run():
    doc = (Path(__file__).parents[1] / "docs" / "ssl.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```python\n")[1:]]
    assert blocks, "docs/ssl.md has no python snippets"
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
