import numpy as np
import torch

from avfed.eval import knn_accuracy, knn_predict, linear_probe_accuracy


def _clusters(n_per_class: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(4) * 5
    feats = torch.cat([c + torch.randn(n_per_class, 4, generator=gen) for c in centres])
    labels = np.repeat(np.arange(4), n_per_class)
    return feats, labels


def test_knn_votes_are_similarity_weighted():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])
    # k=3: two far votes for class 1 lose to one near vote for class 0 at low temperature
    assert knn_predict(gallery, labels, query, k=3, temperature=0.05).item() == 0
    # at a very high temperature the votes are nearly equal, so the majority wins
    assert knn_predict(gallery, labels, query, k=3, temperature=1e3).item() == 1


def test_knn_and_probe_separate_clusters_but_not_noise():
    train_f, train_y = _clusters(30, 0)
    test_f, test_y = _clusters(10, 1)
    assert knn_accuracy(train_f, train_y, test_f, test_y) > 0.9
    assert linear_probe_accuracy(train_f, train_y, test_f, test_y) > 0.9
    noise = torch.randn_like(train_f)
    assert knn_accuracy(noise, train_y, torch.randn_like(test_f), test_y) < 0.6
