import numpy as np
import pytest
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


def test_rankme_is_the_effective_rank_and_flags_collapse():
    from avfed.eval.rankme import rankme, select_round

    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16))[0]
    equal_spectrum = basis[:, :4] @ torch.diag(torch.full((4,), 3.0)) @ basis[:4, :]
    assert abs(rankme(equal_spectrum) - 4.0) < 1e-3  # four equal singular values → rank 4
    collapsed = torch.randn(32, 1) @ torch.randn(1, 8)
    assert rankme(collapsed) < 1.01
    assert rankme(torch.randn(64, 8)) > 6.0
    history = {0: {"rankme": 99.0}, 5: {"image_rankme": 3.0, "audio_rankme": 5.0},
               10: {"image_rankme": 4.5, "audio_rankme": 4.0}}
    assert select_round(history) == 10  # round 0 (the initial model) is never chosen
    with pytest.raises(ValueError, match="N, D"):
        rankme(torch.randn(4))


def test_supervised_upper_bound_learns_separable_classes():
    from avfed import models
    from avfed.data.types import ImageSet
    from avfed.eval.supervised import supervised_accuracy

    g = torch.Generator().manual_seed(0)
    labels = np.arange(80) % 2
    images = torch.rand(80, 1, 8, 8, generator=g) * 0.2
    images[labels == 1, :, :4] += 0.8  # class 1: bright top half
    data = ImageSet(images, labels, ["dark", "bright"])
    train, test = data.subset(np.arange(60)), data.subset(np.arange(60, 80))
    backbone = models.create("resnet10_cifar", in_chans=1, width=4)
    acc = supervised_accuracy(backbone, train, test, torch.nn.Identity(), epochs=20,
                              batch_size=20, lr=1e-2)
    assert acc >= 0.9
    with pytest.raises(ValueError, match="at least 2"):
        supervised_accuracy(backbone, train.subset(np.arange(1)), test, torch.nn.Identity())
