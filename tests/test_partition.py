import time

import numpy as np
import pytest

from avfed.data.partition import describe, dirichlet, iid, partition, quantity_skew, shards

LABELS = np.random.default_rng(0).integers(0, 10, 2000)
CASES = [
    ("iid", {}),
    ("dirichlet", {"alpha": 0.3}),
    ("shards", {"classes_per_client": 2}),
    ("quantity", {"alpha": 0.5}),
]


@pytest.mark.parametrize("kind, params", CASES)
def test_parts_are_disjoint_cover_everything_and_are_deterministic(kind, params):
    parts = partition(kind, LABELS, 20, seed=3, **params)
    assert len(parts) == 20
    joined = np.concatenate(parts)
    assert len(joined) == len(LABELS) == len(np.unique(joined))  # disjoint + complete
    assert all(len(p) > 0 for p in parts)
    again = partition(kind, LABELS, 20, seed=3, **params)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition(kind, LABELS, 20, seed=4, **params)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def _mean_distance_to_global(parts, labels):
    counts = describe(parts, labels).astype(float)
    local = counts / counts.sum(1, keepdims=True)
    glob = np.bincount(labels) / len(labels)
    return np.abs(local - glob).sum(1).mean() / 2  # mean total-variation distance


def test_dirichlet_skew_grows_as_alpha_shrinks():
    skewed = _mean_distance_to_global(dirichlet(LABELS, 10, 0.1, seed=0), LABELS)
    mild = _mean_distance_to_global(dirichlet(LABELS, 10, 100.0, seed=0), LABELS)
    assert skewed > 0.5 and mild < 0.1


def test_dirichlet_respects_min_size_or_says_why():
    parts = dirichlet(LABELS, 50, 0.1, seed=0, min_size=5)
    assert min(len(p) for p in parts) >= 5
    with pytest.raises(ValueError, match="min_size"):
        dirichlet(LABELS, 500, 0.5, min_size=5)


def test_shards_give_each_client_at_most_k_classes_when_classes_divide_evenly():
    labels = np.repeat(np.arange(10), 100)
    counts = describe(shards(labels, 25, 2, seed=1), labels)
    assert ((counts > 0).sum(1) <= 2).all()


def test_quantity_skew_varies_sizes_but_not_label_mix():
    parts = quantity_skew(len(LABELS), 10, alpha=0.3, seed=0)
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() > 5 * sizes.min()
    biggest = parts[int(sizes.argmax())]
    assert _mean_distance_to_global([biggest], LABELS) < 0.1  # labels stay IID


def test_iid_sizes_are_balanced():
    sizes = [len(p) for p in iid(1003, 10, seed=0)]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("kind, params", CASES)
def test_thousand_clients_over_fifty_thousand_examples_under_a_second(kind, params):
    labels = np.random.default_rng(1).integers(0, 10, 50_000)
    start = time.perf_counter()
    parts = partition(kind, labels, 1000, seed=0, **params)
    assert time.perf_counter() - start < 1.0
    assert sum(len(p) for p in parts) == 50_000


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: partition("random", LABELS, 3), "unknown partitioner 'random'"),
        (lambda: partition("dirichlet", LABELS, 3), "bad parameters"),
        (lambda: iid(5, 0), "num_clients must be >= 1"),
        (lambda: iid(5, 6), "exceeds num_examples"),
        (lambda: dirichlet(LABELS, 3, 0.0), "alpha must be > 0"),
        (lambda: shards(LABELS, 3, 0), "classes_per_client"),
        (lambda: dirichlet(LABELS.astype(float), 3, 1.0), "integer"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_by_group_keeps_each_group_on_one_client_and_balances_sizes():
    from avfed.data.partition import by_group

    groups = np.repeat(np.arange(12), [5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3])
    parts = by_group(groups, 4, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(groups)))
    owners = [{int(g) for g in groups[p]} for p in parts]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not owners[a] & owners[b]  # no speaker on two clients
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 5
    with pytest.raises(ValueError, match="one group per client"):
        by_group(np.array([0, 0, 1]), 3)
