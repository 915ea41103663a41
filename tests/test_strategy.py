import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata

from avfed.fl import strategies
from avfed.fl.strategies.base import RoundFailed
from avfed.fl.strategies.screening import reference_shapes
from avfed.rounds import RoundRecord

GLOBAL = ArrayRecord(
    {"w": Array(np.zeros((2, 2), np.float32)), "b": Array(np.zeros(2, np.float32))}
)


def _reply(w, b, n, pid, node):
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.asarray(w, np.float32)),
                                   "b": Array(np.asarray(b, np.float32))}),
            "metrics": MetricRecord({"num-examples": n, "loss": 1.0, "partition-id": pid}),
        }
    )
    return make_message(_meta(node), content=content)


def _meta(node: int) -> Metadata:
    """A reply's metadata as the SuperLink fills it in (sender = the client node)."""
    return Metadata(run_id=1, message_id="", src_node_id=node, dst_node_id=0,
                    reply_to_message_id="m", group_id="1", created_at=0.0, ttl=60.0,
                    message_type="train")


def _strategy(**kwargs):
    s = strategies.create("fedavg", min_available_nodes=1, min_train_nodes=1, **kwargs)
    s._expected = reference_shapes(GLOBAL)  # what configure_train records each round
    return s


def test_fedavg_matches_hand_computed_weighted_mean():
    replies = [
        _reply([[1, 2], [3, 4]], [1, 1], 10, 0, 11),
        _reply([[5, 6], [7, 8]], [3, 3], 30, 1, 12),
    ]
    arrays, metrics = _strategy().aggregate_train(1, replies)
    # 0.25 * first + 0.75 * second
    np.testing.assert_allclose(arrays["w"].numpy(), [[4, 5], [6, 7]], atol=1e-6)
    np.testing.assert_allclose(arrays["b"].numpy(), [2.5, 2.5], atol=1e-6)
    assert metrics["loss"] == pytest.approx(1.0)
    assert "partition-id" not in metrics  # bookkeeping, not averaged


@pytest.mark.parametrize(
    "bad, reason",
    [
        (lambda: _reply([[np.nan, 0], [0, 0]], [0, 0], 10, 2, 13), "NaN"),
        (lambda: _reply([[1, 2, 3], [4, 5, 6]], [0, 0], 10, 2, 13), "shape"),
        (lambda: _reply([[1, 1], [1, 1]], [0, 0], 0, 2, 13), "positive"),
    ],
)
def test_poisoned_update_is_excluded_and_recorded(bad, reason):
    seen = []
    good = [_reply([[1, 1], [1, 1]], [1, 1], 10, 0, 11),
            _reply([[3, 3], [3, 3]], [3, 3], 10, 1, 12)]
    strategy = _strategy(on_round=seen.append)
    arrays, _ = strategy.aggregate_train(1, [*good, bad()])
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 2.0))
    assert len(seen[0].rejected) == 1 and reason in seen[0].rejected[0].reason
    assert len(seen[0].clients) == 2


def test_a_round_without_a_usable_update_stops_the_run_naming_each_failure():
    failed = make_message(_meta(5), error=Error(code=0, reason="worker died"))
    nan = _reply([[np.inf, 0], [0, 0]], [0, 0], 10, 0, 11)
    with pytest.raises(RoundFailed, match=r"0 of .* usable.*worker died \(client node 5\)"
                                          r".*NaN or Inf"):
        _strategy().aggregate_train(1, [failed, nan])


def test_fewer_accepted_updates_than_min_clients_stop_the_run():
    good = _reply([[1, 1], [1, 1]], [0, 0], 10, 0, 11)
    failed = make_message(_meta(5), error=Error(code=0, reason="out of memory"))
    strategy = _strategy()
    strategy.min_accepted = 2
    with pytest.raises(RoundFailed, match="1 of .* 2 needed.*out of memory"):
        strategy.aggregate_train(1, [good, failed])
    strategy.min_accepted = 1
    arrays, _ = strategy.aggregate_train(1, [good, failed])  # one is enough by default
    np.testing.assert_allclose(arrays["w"].numpy(), np.ones((2, 2)))


def test_aggregation_does_not_depend_on_arrival_order():
    rng = np.random.default_rng(0)
    replies = [
        _reply(rng.normal(size=(2, 2)), rng.normal(size=2), int(rng.integers(1, 50)), i, 20 + i)
        for i in range(5)
    ]
    forward, _ = _strategy().aggregate_train(1, list(replies))
    backward, _ = _strategy().aggregate_train(1, list(reversed(replies)))
    assert np.array_equal(forward["w"].numpy(), backward["w"].numpy())


def test_nodes_that_did_not_reply_are_counted_as_timed_out():
    seen = []
    strategy = _strategy(on_round=seen.append)
    strategy._asked = [11, 12, 13]  # what configure_train records: the nodes it asked
    strategy.rounds[1] = RoundRecord(1, 0.0, asked=3)
    arrays, _ = strategy.aggregate_train(1, [_reply([[2, 2], [2, 2]], [0, 0], 10, 0, 11)])
    assert arrays is not None
    timed_out = seen[0].failures("timeout")
    assert sorted(r.node_id for r in timed_out) == [12, 13]
    assert all("fl.timeout_s" in r.reason for r in timed_out)


def test_a_metric_only_some_clients_report_is_booked_per_client_not_averaged():
    """With client sampling a FedU round mixes first-timers (no divergence yet) with
    returning clients; Flower refuses replies whose metric keys differ, so the round must
    still aggregate, with the divergence kept in the per-client rows."""
    first_timer = _reply([[1, 2], [3, 4]], [1, 1], 10, 0, 11)
    returning = _reply([[5, 6], [7, 8]], [3, 3], 30, 1, 12)
    next(iter(returning.content.metric_records.values()))["divergence"] = 42.0
    strategy = _strategy()
    seen = []
    strategy.on_round = seen.append
    arrays, metrics = strategy.aggregate_train(1, [first_timer, returning])
    np.testing.assert_allclose(arrays["w"].numpy(), [[4, 5], [6, 7]], atol=1e-6)
    assert metrics["loss"] == pytest.approx(1.0) and "divergence" not in metrics
    rows = {row["partition-id"]: row for row in seen[0].clients}
    assert rows[1]["divergence"] == 42.0 and "divergence" not in rows[0]
