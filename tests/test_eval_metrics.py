"""Full-ranking metrics against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from training.metrics import hit_matrix, per_user_metrics, ranking_metrics

L3 = math.log2(3)  # discount at rank 2 is 1/log2(3)


def rel_matrix(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, items] = 1.0
    return sp.csr_matrix(dense)


# user 0: relevant {1, 3, 5}, recs 1 2 3 4 -> hits 1 0 1 0
# user 1: relevant {0},       recs 5 4 0 2 -> hits 0 0 1 0
# user 2: relevant {} (excluded from every average)
RECS = np.array([[1, 2, 3, 4], [5, 4, 0, 2], [0, 1, 2, 3]])
REL = rel_matrix([[1, 3, 5], [0], []])
POP = np.array([4, 2, 1, 1, 2, 0])  # distinct training customers per item, of 4


def test_hit_matrix_marks_relevant_slots_and_ignores_padding():
    recs = np.array([[1, 2, 3, -1], [5, 4, 0, -1], [0, 1, 2, 3]])
    hits = hit_matrix(recs, REL)
    assert hits.tolist() == [
        [True, False, True, False],
        [False, False, True, False],
        [False, False, False, False],
    ]


def test_hit_matrix_unsorted_duplicate_and_zero_entries():
    rel = sp.csr_matrix(
        (np.array([1.0, 1.0, 0.0, 2.0]), np.array([4, 1, 2, 4]), np.array([0, 4])), shape=(1, 6)
    )
    assert hit_matrix(np.array([[4, 2, 1, 0]]), rel).tolist() == [[True, False, True, False]]


def test_each_metric_at_k4_matches_hand_computation():
    values, n = ranking_metrics(RECS, REL, ks=(4,), item_popularity=POP, n_customers=4)
    assert n == 2
    idcg3 = 1 + 1 / L3 + 1 / 2
    ndcg_u0 = (1 + 1 / 2) / idcg3
    ndcg_u1 = (1 / 2) / 1
    expect = {
        "precision": (2 / 4 + 1 / 4) / 2,
        "recall": (2 / 3 + 1 / 1) / 2,  # denominator |relevant|
        "ndcg": (ndcg_u0 + ndcg_u1) / 2,
        "map": ((1 / 1 + 2 / 3) / 3 + (1 / 3) / 1) / 2,
        "hit_rate": 1.0,
        "mrr": (1 / 1 + 1 / 3) / 2,
        "coverage": 6 / 6,  # user 2 is excluded, users 0 and 1 cover all six items
    }
    for name, want in expect.items():
        assert values[(name, 4)] == pytest.approx(want), name


def test_cut_off_k1_and_k2():
    values, _ = ranking_metrics(RECS, REL, ks=(1, 2), item_popularity=POP, n_customers=4)
    # k=1: user 0 hits at rank 1, user 1 misses
    assert values[("precision", 1)] == pytest.approx(0.5)
    assert values[("recall", 1)] == pytest.approx((1 / 3) / 2)
    assert values[("ndcg", 1)] == pytest.approx(0.5)
    assert values[("map", 1)] == pytest.approx(0.5)  # AP normalised by min(|R|, 1) = 1
    assert values[("mrr", 1)] == pytest.approx(0.5)
    assert values[("hit_rate", 1)] == pytest.approx(0.5)
    assert values[("coverage", 1)] == pytest.approx(2 / 6)
    # novelty: -log2(share); item 1: 2/4 -> 1 bit; item 5 bought by nobody counts as 1/4 -> 2
    assert values[("novelty", 1)] == pytest.approx((1 + 2) / 2)
    assert values[("avg_popularity", 1)] == pytest.approx((2 / 4 + 0 / 4) / 2)
    # k=2: still one hit for user 0, none for user 1; ideal DCG for user 0 = 1 + 1/log2(3)
    assert values[("ndcg", 2)] == pytest.approx((1 / (1 + 1 / L3)) / 2)
    assert values[("precision", 2)] == pytest.approx((1 / 2) / 2)


def test_padded_slots_are_misses_and_not_covered():
    values, n = ranking_metrics(np.array([[1, -1, -1]]), rel_matrix([[1]]), ks=(3,),
                                item_popularity=POP, n_customers=4)
    assert n == 1
    assert values[("precision", 3)] == pytest.approx(1 / 3)
    assert values[("recall", 3)] == pytest.approx(1.0)
    assert values[("ndcg", 3)] == pytest.approx(1.0)
    assert values[("coverage", 3)] == pytest.approx(1 / 6)
    assert values[("novelty", 3)] == pytest.approx(1.0)


def test_all_relevant_sets_empty_gives_nan_and_zero_users():
    values, n = ranking_metrics(RECS[:1], rel_matrix([[]]), ks=(2,))
    assert n == 0
    assert math.isnan(values[("precision", 2)]) and math.isnan(values[("ndcg", 2)])


def test_per_user_metrics_nan_for_empty_and_perfect_list():
    hits = np.array([[True, True], [False, False]])
    out = per_user_metrics(hits, np.array([2, 0]), 2)
    assert out["ndcg"][0] == pytest.approx(1.0) and out["map"][0] == pytest.approx(1.0)
    assert np.isnan(out["recall"][1])


def test_k_wider_than_lists_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="exceeds"):
        ranking_metrics(RECS, REL, ks=(5,))
    with pytest.raises(ValueError, match="positive"):
        ranking_metrics(RECS, REL, ks=(0,))
    with pytest.raises(ValueError, match="does not match"):
        hit_matrix(RECS[:2], REL)


def test_vectorised_matches_a_plain_python_reference():
    rng = np.random.default_rng(3)
    n_users, n_items, k = 50, 40, 8
    rel = sp.random(n_users, n_items, density=0.1, format="csr", random_state=4)
    recs = np.array([rng.permutation(n_items)[:k] for _ in range(n_users)])
    values, n = ranking_metrics(recs, rel, ks=(k,))
    precs, ndcgs, aps = [], [], []
    for u in range(n_users):
        r = set(rel[u].indices.tolist())
        if not r:
            continue
        h = [int(i in r) for i in recs[u]]
        precs.append(sum(h) / k)
        dcg = sum(x / math.log2(j + 2) for j, x in enumerate(h))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(r), k)))
        ndcgs.append(dcg / idcg)
        aps.append(sum(sum(h[: j + 1]) / (j + 1) * h[j] for j in range(k)) / min(len(r), k))
    assert n == len(precs)
    assert values[("precision", k)] == pytest.approx(np.mean(precs))
    assert values[("ndcg", k)] == pytest.approx(np.mean(ndcgs))
    assert values[("map", k)] == pytest.approx(np.mean(aps))
