import numpy as np
import pytest
import torch

from avfed.eval.retrieval import rank_gallery, retrieval_metrics

# Gallery of 4 unit vectors at 0°, 90°, 180°, 45°, classes A B A B (0 1 0 1).
GALLERY = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7071, 0.7071]])
GALLERY_LABELS = np.array([0, 1, 0, 1])


def test_recall_and_map_match_a_hand_worked_case():
    queries = torch.tensor([[1.0, 0.1], [0.0, 2.0], [-1.0, -0.2]])
    query_labels = np.array([1, 1, 0])
    # cosine ranks (most similar first):
    #   q0 (≈5.7°, class B):  g0 A, g3 B, g1 B, g2 A -> relevant at ranks 2, 3
    #   q1 (90°, class B):    g1 B, g3 B, g0 A / g2 A tie at 0 -> g0 first -> ranks 1, 2
    #   q2 (≈191°, class A):  cosines below -> g2 A, g1 B, g3 B, g0 A -> ranks 1, 4
    ranking = rank_gallery(queries, GALLERY)
    assert ranking[0].tolist() == [0, 3, 1, 2]
    assert ranking[1].tolist() == [1, 3, 0, 2]  # the 0-vs-2 tie keeps gallery order
    # q2 = (-1, -0.2): cos with g0 = -0.981, g1 = -0.196, g2 = 0.981, g3 = -0.832
    assert ranking[2].tolist() == [2, 1, 3, 0]
    result = retrieval_metrics(queries, query_labels, GALLERY, GALLERY_LABELS, ks=(1, 2, 4))
    # recall@1: q0 miss, q1 hit, q2 hit -> 2/3; recall@2 and @4: all hit
    assert result.recall == pytest.approx({1: 2 / 3, 2: 1.0, 4: 1.0})
    # AP: q0 = (1/2 + 2/3) / 2 = 7/12; q1 = (1 + 1) / 2 = 1; q2 (A at ranks 1, 4) = (1 + 2/4) / 2
    assert result.mean_average_precision == pytest.approx((7 / 12 + 1.0 + 0.75) / 3)
    assert result.as_dict()["mAP"] == result.mean_average_precision
    assert result.as_dict()["recall@2"] == 1.0
    assert result.num_queries == 3 and result.unmatched_queries == 0


def test_batching_does_not_change_the_result():
    rng = torch.Generator().manual_seed(0)
    gallery, queries = torch.randn(40, 8, generator=rng), torch.randn(13, 8, generator=rng)
    g_labels = np.arange(40) % 4
    q_labels = np.arange(13) % 4
    whole = retrieval_metrics(queries, q_labels, gallery, g_labels)
    batched = retrieval_metrics(queries, q_labels, gallery, g_labels, batch_size=3)
    assert whole.recall == pytest.approx(batched.recall)
    assert whole.mean_average_precision == pytest.approx(batched.mean_average_precision)
    assert 0 < whole.recall[1] <= whole.recall[5] <= whole.recall[10] <= 1


def test_query_of_an_absent_class_counts_as_a_miss_with_zero_ap():
    result = retrieval_metrics(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 7]),
                               GALLERY, GALLERY_LABELS, ks=(1,))
    assert result.recall[1] == 0.5
    # query 0 ranks g0 A, g3 B, g1 B, g2 A: AP = (1 + 2/4) / 2; query 1 has AP 0
    assert result.mean_average_precision == pytest.approx(0.75 / 2)
    assert result.unmatched_queries == 1


def test_bad_inputs_raise_clear_errors():
    q, ql = torch.ones(2, 2), np.array([0, 1])
    with pytest.raises(ValueError, match="non-empty gallery"):
        retrieval_metrics(q, ql, torch.zeros(0, 2), np.array([], dtype=int))
    with pytest.raises(ValueError, match="k=10 exceeds the gallery size 4"):
        retrieval_metrics(q, ql, GALLERY, GALLERY_LABELS)
    with pytest.raises(ValueError, match="query_labels has 3 labels"):
        retrieval_metrics(q, np.array([0, 1, 2]), GALLERY, GALLERY_LABELS, ks=(1,))
    with pytest.raises(ValueError, match="dimension 3"):
        retrieval_metrics(torch.ones(2, 3), ql, GALLERY, GALLERY_LABELS, ks=(1,))
    with pytest.raises(ValueError, match=">= 1"):
        retrieval_metrics(q, ql, GALLERY, GALLERY_LABELS, ks=(0,))
