"""Each aggregation rule against a hand-computed example (2–3 clients, 2 small layers)."""

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata

from avfed.fl import strategies
from avfed.fl.aggregation import fedvssl, ldawa, loss_weights, weighted_mean
from avfed.fl.strategies.screening import reference_shapes

GLOBAL = {"w": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
          "b": np.array([1.0, 1.0], np.float32)}
CLIENTS = [
    {"w": np.array([[2.0, 0.0], [0.0, 2.0]], np.float32),    # parallel to the global w
     "b": np.array([1.0, -1.0], np.float32)},                 # orthogonal to the global b
    {"w": np.array([[0.0, 1.0], [1.0, 0.0]], np.float32),    # orthogonal to the global w
     "b": np.array([2.0, 2.0], np.float32)},                  # parallel to the global b
]
COUNTS = [10.0, 30.0]
LOSSES = [1.0, 2.0]


def _reply(state, n, loss, pid):
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in state.items()}),
        "metrics": MetricRecord({"num-examples": n, "loss": loss, "partition-id": pid}),
    })
    meta = Metadata(run_id=1, message_id="", src_node_id=100 + pid, dst_node_id=0,
                    reply_to_message_id="m", group_id="1", created_at=0.0, ttl=60.0,
                    message_type="train")
    return make_message(meta, content=content)


def _strategy(name, **kwargs):
    s = strategies.create(name, min_available_nodes=1, min_train_nodes=1, **kwargs)
    record = ArrayRecord({k: Array(v) for k, v in GLOBAL.items()})
    s._expected = reference_shapes(record)
    s.previous_global = record
    return s


def _run(strategy, server_round, clients=CLIENTS, counts=COUNTS, losses=LOSSES):
    replies = [_reply(c, n, loss, i) for i, (c, n, loss) in
               enumerate(zip(clients, counts, losses, strict=True))]
    arrays, _ = strategy.aggregate_train(server_round, replies)
    return {k: v.numpy() for k, v in arrays.items()}


def test_ldawa_default_is_the_unnormalised_mean_of_cosine_scaled_tensors():
    out = ldawa(CLIENTS, GLOBAL, COUNTS)
    # w: δ1 = 1 (parallel), δ2 = 0 (orthogonal) → (1·w1 + 0·w2) / 2
    np.testing.assert_allclose(out["w"], [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    # b: δ1 = 0, δ2 = 1 → (0·b1 + 1·b2) / 2
    np.testing.assert_allclose(out["b"], [1.0, 1.0], atol=1e-6)


def test_ldawa_normalised_variant_divides_by_the_sum_of_cosines():
    global_ = {"w": np.array([1.0, 1.0], np.float32)}
    clients = [{"w": np.array([2.0, 2.0], np.float32)}, {"w": np.array([3.0, 0.0], np.float32)}]
    d2 = 1 / math.sqrt(2)  # cos((3, 0), (1, 1))
    out = ldawa(clients, global_, [1, 1], normalize=True)
    expected = (1.0 * np.array([2.0, 2.0]) + d2 * np.array([3.0, 0.0])) / (1 + d2)
    np.testing.assert_allclose(out["w"], expected, rtol=1e-6)
    plain = ldawa(clients, global_, [1, 1])
    np.testing.assert_allclose(plain["w"], (np.array([2.0, 2.0]) + d2 * np.array([3.0, 0.0])) / 2,
                               rtol=1e-6)


def test_ldawa_with_clients_equal_to_the_global_model_is_their_mean():
    same = [dict(GLOBAL), dict(GLOBAL), dict(GLOBAL)]
    out = ldawa(same, GLOBAL, [1, 5, 9])
    for k in GLOBAL:
        np.testing.assert_allclose(out[k], GLOBAL[k], atol=1e-6)


def test_ldawa_strategy_is_fedavg_during_warmup_then_ldawa():
    s = _strategy("ldawa", warmup_rounds=2)
    warm = _run(s, 2)
    np.testing.assert_allclose(warm["w"], 0.25 * CLIENTS[0]["w"] + 0.75 * CLIENTS[1]["w"],
                               atol=1e-6)
    after = _run(s, 3)
    np.testing.assert_allclose(after["w"], ldawa(CLIENTS, GLOBAL, COUNTS)["w"], atol=1e-6)


def test_fedvssl_mixes_element_wise_not_by_concatenation():
    alpha = 0.9
    e1, e2 = math.exp(-1.0), math.exp(-2.0)
    by_loss = {k: (e1 * CLIENTS[0][k] + e2 * CLIENTS[1][k]) / (e1 + e2) for k in GLOBAL}
    by_size = {k: 0.25 * CLIENTS[0][k] + 0.75 * CLIENTS[1][k] for k in GLOBAL}
    out = _run(_strategy("fedvssl", alpha=alpha), 1)
    for k in GLOBAL:
        # concatenating two lists of tensors would double the count or change shapes
        assert out[k].shape == GLOBAL[k].shape
        np.testing.assert_allclose(out[k], alpha * by_loss[k] + (1 - alpha) * by_size[k],
                                   rtol=1e-6)
    assert set(out) == set(GLOBAL)


def test_fedvssl_alpha_extremes_and_swa():
    only_loss = fedvssl(CLIENTS, COUNTS, LOSSES, None, alpha=1.0, beta=0.0)
    np.testing.assert_allclose(only_loss["b"], weighted_mean(CLIENTS, list(loss_weights(LOSSES)))
                               ["b"], rtol=1e-6)
    only_avg = fedvssl(CLIENTS, COUNTS, LOSSES, None, alpha=0.0, beta=0.0)
    np.testing.assert_allclose(only_avg["w"], weighted_mean(CLIENTS, COUNTS)["w"], rtol=1e-6)
    swa = fedvssl(CLIENTS, COUNTS, LOSSES, GLOBAL, alpha=0.0, beta=1.0)
    np.testing.assert_allclose(swa["w"], 0.5 * only_avg["w"] + 0.5 * GLOBAL["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        fedvssl(CLIENTS, COUNTS, LOSSES, None, alpha=1.5, beta=0.0)


def test_fedvssl_partial_update_is_sent_to_clients():
    s = _strategy("fedvssl", partial_update=True, partial_prefixes="backbone.")
    assert s.client_config(1) == {"client-update": "partial",
                                  "partial-update-prefixes": "backbone."}
    assert _strategy("fedvssl").client_config(1) == {}


def test_loss_weights_are_stable_for_large_losses():
    w = loss_weights([1000.0, 1001.0])
    np.testing.assert_allclose(w, [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])


@pytest.mark.parametrize("name", ["ldawa", "fedvssl", "fedadam", "fedyogi", "fedavgm"])
def test_poisoned_update_is_excluded_and_the_global_stays_finite(name):
    s = _strategy(name)
    if hasattr(s, "current_arrays"):
        s.current_arrays = {k: v.copy() for k, v in GLOBAL.items()}
    poisoned = {"w": np.full((2, 2), np.nan, np.float32), "b": np.zeros(2, np.float32)}
    clean = _run(s, 3, clients=CLIENTS[:1], counts=[10.0], losses=[1.0])
    s2 = _strategy(name)
    if hasattr(s2, "current_arrays"):
        s2.current_arrays = {k: v.copy() for k, v in GLOBAL.items()}
    with_poison = _run(s2, 3, clients=[CLIENTS[0], poisoned], counts=[10.0, 30.0],
                       losses=[1.0, 0.5])
    for k in GLOBAL:
        assert np.isfinite(with_poison[k]).all()
        np.testing.assert_allclose(with_poison[k], clean[k], atol=1e-6)


def test_fedadam_one_step_matches_the_formula():
    eta, beta1, beta2, tau = 0.1, 0.9, 0.99, 1e-3
    s = _strategy("fedadam", eta=eta, beta_1=beta1, beta_2=beta2, tau=tau)
    s.current_arrays = {k: v.copy() for k, v in GLOBAL.items()}
    out = _run(s, 1)
    for k in GLOBAL:
        delta = (0.25 * CLIENTS[0][k] + 0.75 * CLIENTS[1][k]) - GLOBAL[k]
        m = (1 - beta1) * delta
        v = (1 - beta2) * delta**2
        eta_norm = eta * math.sqrt(1 - beta2**2) / (1 - beta1**2)  # Flower's round + 1
        np.testing.assert_allclose(out[k], GLOBAL[k] + eta_norm * m / (np.sqrt(v) + tau),
                                   rtol=1e-5)


def test_fedu_and_fedema_send_their_client_rules():
    assert _strategy("fedu", threshold=0.3).client_config(1)["fedu-threshold"] == 0.3
    cfg = _strategy("fedema", tau=0.5).client_config(1)
    assert cfg["client-update"] == "fedema" and cfg["fedema-tau"] == 0.5
    with pytest.raises(ValueError, match="tau"):
        strategies.create("fedema", tau=0.0)


def test_rules_keep_scalar_tensors_scalar():
    scalar = {"n": np.array(3, np.int64), "w": np.ones(2, np.float32)}
    s = strategies.create("ldawa", min_available_nodes=1, min_train_nodes=1, warmup_rounds=0)
    record = ArrayRecord({k: Array(v) for k, v in scalar.items()})
    s._expected = reference_shapes(record)
    s.previous_global = record
    out = _run(s, 1, clients=[scalar, scalar], counts=[1.0, 1.0], losses=[1.0, 1.0])
    assert out["n"].shape == () and out["w"].shape == (2,)


def test_ldawa_default_warmup_is_fedavg_through_round_3():
    fedavg_w = 0.25 * CLIENTS[0]["w"] + 0.75 * CLIENTS[1]["w"]
    s = _strategy("ldawa")
    assert s.warmup_rounds == 3
    np.testing.assert_allclose(_run(s, 3)["w"], fedavg_w, atol=1e-6)  # last warm-up round
    first = _run(s, 4)["w"]
    np.testing.assert_allclose(first, ldawa(CLIENTS, GLOBAL, COUNTS)["w"], atol=1e-6)
    assert not np.allclose(first, fedavg_w)


def test_fedvssl_swa_starts_in_round_2():
    no_swa = fedvssl(CLIENTS, COUNTS, LOSSES, None, alpha=0.9, beta=0.0)
    swa = fedvssl(CLIENTS, COUNTS, LOSSES, GLOBAL, alpha=0.9, beta=1.0)
    s = _strategy("fedvssl", alpha=0.9, beta=1.0)  # previous_global is set, as in round 1
    first, second = _run(s, 1), _run(s, 2)
    for k in GLOBAL:
        np.testing.assert_allclose(first[k], no_swa[k], rtol=1e-6)
        np.testing.assert_allclose(second[k], swa[k], rtol=1e-6)
        assert not np.allclose(first[k], second[k])


def test_integer_tensors_keep_their_dtype_and_are_not_loss_weighted():
    clients = [{**c, "num_batches_tracked": np.array(n, np.int64)}
               for c, n in zip(CLIENTS, (10, 21), strict=True)]
    previous = {**GLOBAL, "num_batches_tracked": np.array(1000, np.int64)}
    # by example count (10, 30): 0.25 · 10 + 0.75 · 21 = 18.25 → 18; the loss weights
    # (0.73, 0.27) would give 12.9, and SWA with 1000 would give ~509
    for alpha, beta in ((0.9, 0.0), (1.0, 1.0), (0.0, 1.0)):
        out = fedvssl(clients, COUNTS, LOSSES, previous, alpha=alpha, beta=beta)
        assert out["num_batches_tracked"].dtype == np.int64
        assert out["num_batches_tracked"].shape == ()
        assert int(out["num_batches_tracked"]) == 18
        assert out["w"].dtype == np.float32
    for out in (weighted_mean(clients, COUNTS), ldawa(clients, previous, COUNTS)):
        assert out["num_batches_tracked"].dtype == np.int64
        assert int(out["num_batches_tracked"]) == 18
