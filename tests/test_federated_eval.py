"""Federated evaluation: clients score the global model on their own held-out data."""

import csv
import json

import numpy as np
import pytest
from flwr.app import MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata

from avfed.build import build_run
from avfed.config import ConfigError, load_config
from avfed.fl import strategies
from avfed.fl.simulation import run_federated
from avfed.rounds import RoundRecord, score_distribution
from avfed.runs import RunDir

TINY = ["fl.num_clients=3", "fl.sim_cpus=2", "fl.rounds=2", "data.image_size=16",
        "data.partitioner=iid", "model.name=resnet10_cifar", "model.args.width=4"]
EXAMPLE = ["plugins=[example_plugins]", "task.name=example_classifier", *TINY]


def test_distribution_of_a_score_over_clients_matches_hand_computation():
    rows = [{"round": 1, "node_id": 10 + i, "partition-id": i, "num-examples": n,
             "accuracy": a}
            for i, (n, a) in enumerate([(10, 0.9), (30, 0.5), (20, 0.2), (40, 0.6),
                                        (10, 1.0), (10, 0.7), (10, 0.4), (10, 0.8),
                                        (10, 0.3), (10, 0.1), (20, 0.0), (20, 0.95)])]
    stats = score_distribution(rows)["accuracy"]
    weights = np.array([r["num-examples"] for r in rows], float)
    values = np.array([r["accuracy"] for r in rows])
    assert stats["weighted_mean"] == pytest.approx((weights * values).sum() / weights.sum())
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["worst_10pct"] == pytest.approx(0.0)  # 12 clients: the lowest one
    assert stats["min"] == 0.0 and stats["clients"] == 12
    # 25 clients: the lowest decile is 2 clients; with 3 clients it is still 1
    many = [{"num-examples": 1, "s": float(v)} for v in range(25)]
    assert score_distribution(many)["s"]["worst_10pct"] == pytest.approx(0.5)
    assert score_distribution(many[:3])["s"]["worst_10pct"] == 0.0


def _meta(node: int) -> Metadata:
    return Metadata(run_id=1, message_id="", src_node_id=node, dst_node_id=0,
                    reply_to_message_id="m", group_id="1", created_at=0.0, ttl=60.0,
                    message_type="evaluate")


def _eval_reply(node, pid, n, **scores):
    metrics = MetricRecord({**scores, "num-examples": n, "partition-id": pid})
    return make_message(_meta(node), content=RecordDict({"metrics": metrics}))


def test_bad_evaluation_replies_are_left_out_and_counted_without_stopping_the_run():
    seen: list[RoundRecord] = []
    strategy = strategies.create("fedavg", min_available_nodes=1, min_train_nodes=1,
                                 fraction_evaluate=1.0, min_evaluate_nodes=1)
    strategy.min_accepted = 3  # a training round this short of updates would stop the run
    strategy.on_evaluate = seen.append
    strategy._eval_asked = [11, 12, 13, 14, 15, 16]  # what configure_evaluate records
    replies = [
        _eval_reply(11, 0, 10, accuracy=0.5),
        _eval_reply(12, 1, 30, accuracy=0.9),
        _eval_reply(13, 2, 10, accuracy=float("nan")),
        make_message(_meta(14), error=Error(code=0, reason="Message: cuda out of memory")),
        make_message(_meta(15), content=RecordDict({"metrics": MetricRecord(
            {"no-test-data": 1, "num-examples": 0, "partition-id": 4})})),
    ]  # node 16 never answers
    aggregated = strategy.aggregate_evaluate(1, list(reversed(replies)))
    assert aggregated["accuracy"] == pytest.approx((0.5 * 10 + 0.9 * 30) / 40)
    (record,) = seen
    assert [row["partition-id"] for row in record.clients] == [0, 1]  # sorted, screened
    kinds = {bad.node_id: (bad.kind, bad.reason) for bad in record.rejected}
    assert kinds[13][0] == "rejected" and "accuracy" in kinds[13][1]
    assert kinds[14] == ("error", "client error: cuda out of memory")
    assert kinds[15][0] == "skipped"
    assert kinds[16][0] == "timeout"
    # nothing usable at all: no aggregate, still no exception
    assert strategy.aggregate_evaluate(2, [replies[2], replies[3]]) is None
    assert len(seen[1].clients) == 0 and len(seen[1].rejected) == 6


def test_federated_eval_needs_a_task_with_a_per_client_score():
    with pytest.raises(ConfigError, match=r"fl\.federated_eval.*evaluate_local"):
        build_run(load_config("simclr_digits", [*TINY, "fl.federated_eval=true"]))
    with pytest.raises(ConfigError, match=r"fl\.fraction_evaluate"):
        load_config("simclr_digits", ["fl.fraction_evaluate=0"])


def test_held_out_split_is_dealt_out_and_clients_without_any_are_named():
    cfg = load_config("simclr_digits", [*EXAMPLE, "fl.federated_eval=true"])
    built = build_run(cfg, with_strategy=False)
    (_, test), = built.splits.values()
    parts = [p["image"] for p in built.test_partitions()]
    held = np.concatenate(parts)
    assert len(held) == len(np.unique(held)) == len(test)  # disjoint, covering
    assert not built.test_partition_notes
    data = built.client_test_data(1)
    assert data.num_examples == len(parts[1])
    np.testing.assert_array_equal(data.labels["image"], test.labels[parts[1]])
    # 13 held-out examples for 20 clients: the iid partitioner refuses, 7 clients get none
    small = load_config("simclr_digits", [*EXAMPLE, "fl.federated_eval=true",
                                          "fl.num_clients=20", "data.test_fraction=0.007"])
    built = build_run(small, with_strategy=False)
    (_, test), = built.splits.values()
    sizes = [len(p["image"]) for p in built.test_partitions()]
    assert sum(sizes) == len(test) and sizes.count(0) == 20 - len(test)
    assert built.client_test_data(19).num_examples == 0
    assert "skipped" in built.test_partition_notes[-1]


def test_a_federated_run_with_client_evaluation_reports_every_client(tmp_path):
    cfg = load_config("simclr_digits", [*EXAMPLE, "fl.federated_eval=true", "fl.eval_every=2"])
    run = RunDir.create(cfg, tmp_path / "run")
    summary = run_federated(build_run(cfg), run)
    assert summary["status"] == "finished"
    with (run.path / "clients_eval.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    # round 1 is not evaluated (fl.eval_every=2); round 2, the last, is, by all 3 clients
    assert sorted(int(r["partition-id"]) for r in rows if r["round"] == "2") == [0, 1, 2]
    assert {r["round"] for r in rows} == {"2"} and {r["status"] for r in rows} == {"ok"}
    n = np.array([float(r["num-examples"]) for r in rows])
    acc = np.array([float(r["accuracy"]) for r in rows])
    (_, test), = build_run(cfg, with_strategy=False).splits.values()
    assert n.sum() == len(test)
    metrics = {row["round"]: row for row in map(json.loads, (run.path / "metrics.jsonl")
                                                    .read_text().splitlines())}
    final = metrics[2]
    assert final["fed_clients"] == 3 and final["fed_clients_error"] == 0
    assert final["fed_accuracy_weighted_mean"] == pytest.approx((n * acc).sum() / n.sum())
    assert final["fed_accuracy_mean"] == pytest.approx(acc.mean())
    assert final["fed_accuracy_worst_10pct"] == final["fed_accuracy_min"] == acc.min()
    # the clients scored the global model: their held-out shares cover the test split, so
    # the example-weighted mean of their accuracies is the central accuracy
    assert final["fed_accuracy_weighted_mean"] == pytest.approx(final["accuracy"])
    assert "fed_clients" not in metrics[1]
    fed = summary["federated_eval"]
    assert fed["round"] == 2 and fed["clients"] == 3
    assert fed["scores"]["accuracy"]["weighted_mean"] == final["fed_accuracy_weighted_mean"]
    print(f"central accuracy {final['accuracy']:.4f}; clients {acc.round(4).tolist()} "
          f"on {n.astype(int).tolist()} examples; weighted mean "
          f"{final['fed_accuracy_weighted_mean']:.4f}")
