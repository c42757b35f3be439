"""features.matrix: weightings, decay, BM25/TF-IDF, support filters, id mapping, counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight as implicit_bm25
from implicit.nearest_neighbours import tfidf_weight as implicit_tfidf
from pydantic import ValidationError

from features.errors import PatronError
from features.idmap import IdMap
from features.matrix import MatrixConfig, build_interactions, encode_ids
from features.synthetic import generate_purchases


def _lines() -> pd.DataFrame:
    """3 customers x 3 items; customer 10 buys item "a" twice (qty 1 and 3)."""
    return pd.DataFrame({
        "customer_id": [10, 10, 10, 20, 20, 30, 30],
        "item_id": ["a", "a", "b", "b", "c", "a", "c"],
        "timestamp": pd.to_datetime([
            "2024-01-01", "2024-01-11", "2024-01-05", "2024-01-11", "2024-01-01",
            "2024-01-06", "2024-01-11",
        ]),
        "quantity": [1.0, 3.0, 2.0, 1.0, 4.0, 1.0, 2.0],
        "price": [2.0, 2.0, 5.0, 5.0, 1.5, 2.0, 1.5],
        "order_id": [1, 2, 1, 3, 4, 5, 6],
    })


# expected dense matrices (rows 10, 20, 30; cols a, b, c)
COUNT = np.array([[2, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=float)
QUANTITY = np.array([[4, 2, 0], [0, 1, 4], [1, 0, 2]], dtype=float)
SPEND = np.array([[8, 10, 0], [0, 5, 6], [2, 0, 3]], dtype=float)


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("binary", (COUNT > 0).astype(float)),
        ("count", COUNT),
        ("log1p", np.log1p(COUNT)),
        ("quantity", QUANTITY),
        ("spend", SPEND),
    ],
)
def test_weighting_schemes_on_3x3(weighting, expected):
    im = build_interactions(_lines(), MatrixConfig(weighting=weighting))
    assert im.customers.ids.tolist() == [10, 20, 30]
    assert im.items.ids.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(im.matrix.toarray(), expected, rtol=1e-6)
    np.testing.assert_array_equal(im.counts.toarray(), COUNT)
    assert im.matrix.dtype == np.float32
    assert im.weighting["weighting"] == weighting


def test_default_is_log1p_and_weighting_records_config():
    im = build_interactions(_lines())
    np.testing.assert_allclose(im.matrix.toarray(), np.log1p(COUNT), rtol=1e-6)
    assert im.weighting == MatrixConfig().model_dump(mode="json")
    assert MatrixConfig(**im.weighting) == MatrixConfig()


def test_time_decay_with_known_half_life():
    # reference = last timestamp 2024-01-11; half-life 10 days
    im = build_interactions(_lines(), MatrixConfig(weighting="count", half_life_days=10))
    w = lambda age: 0.5 ** (age / 10)  # noqa: E731
    expected = np.array([
        [w(10) + w(0), w(6), 0],
        [0, w(0), w(10)],
        [w(5), 0, w(0)],
    ])
    np.testing.assert_allclose(im.matrix.toarray(), expected, rtol=1e-6)
    np.testing.assert_array_equal(im.counts.toarray(), COUNT)  # counts never decay
    assert pd.Timestamp(im.weighting["reference_time"]) == pd.Timestamp("2024-01-11")


def test_decay_binary_keeps_most_recent_and_explicit_reference():
    cfg = MatrixConfig(weighting="binary", half_life_days=5, reference_time="2024-01-21")
    im = build_interactions(_lines(), cfg)
    w = lambda age: 0.5 ** (age / 5)  # noqa: E731
    expected = np.array([[w(10), w(16), 0], [0, w(10), w(20)], [w(15), 0, w(10)]])
    np.testing.assert_allclose(im.matrix.toarray(), expected, rtol=1e-6)


def test_decay_spend_and_future_lines_weigh_one():
    cfg = MatrixConfig(weighting="spend", half_life_days=10, reference_time="2024-01-06")
    im = build_interactions(_lines(), cfg)
    # customer 10 item a: line on 01-01 (age 5, spend 2) + line on 01-11 (future, spend 6)
    assert im.matrix[0, 0] == pytest.approx(2 * 0.5 ** 0.5 + 6, rel=1e-6)


def test_bm25_and_tfidf_match_implicit():
    p = generate_purchases(n_customers=60, n_items=40, n_days=60, seed=2).purchases
    base = build_interactions(p, MatrixConfig(weighting="count")).matrix.astype(np.float64)
    bm = build_interactions(p, MatrixConfig(weighting="count", reweight="bm25",
                                            bm25_k1=1.5, bm25_b=0.6))
    ref = sp.csr_matrix(implicit_bm25(base.T.tocsr(), K1=1.5, B=0.6)).T.toarray()
    np.testing.assert_allclose(bm.matrix.toarray(), ref, rtol=1e-5, atol=1e-6)
    tf = build_interactions(p, MatrixConfig(weighting="count", reweight="tfidf"))
    ref = sp.csr_matrix(implicit_tfidf(base.T.tocsr())).T.toarray()
    np.testing.assert_allclose(tf.matrix.toarray(), ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(bm.matrix.toarray(), base.toarray())


def test_min_support_filters_iterate_to_a_core():
    # item z has 2 customers, but customer 3 has only z and y -> after dropping y (1
    # customer), customer 3 has 1 item and goes, leaving z with 1 customer -> z goes too.
    p = pd.DataFrame({
        "customer_id": [1, 1, 2, 2, 3, 3, 1, 2],
        "item_id": ["x", "w", "x", "w", "z", "y", "z", "v"],
    })
    cfg = MatrixConfig(weighting="binary", min_item_customers=2, min_customer_items=2)
    im = build_interactions(p, cfg)
    assert im.items.ids.tolist() == ["w", "x"]
    assert im.customers.ids.tolist() == [1, 2]
    np.testing.assert_array_equal(im.matrix.toarray(), np.ones((2, 2)))
    assert im.counts.shape == im.matrix.shape
    once = build_interactions(p, MatrixConfig(min_item_customers=2))
    assert once.items.ids.tolist() == ["w", "x", "z"]  # v, y dropped; customer 3 kept


def test_given_id_maps_drop_unknown_and_keep_shape():
    customers = IdMap(np.array([30, 10, 99]))
    items = IdMap(np.array(["c", "a"]))
    im = build_interactions(_lines(), MatrixConfig(weighting="count", min_item_customers=5),
                            customers=customers, items=items)
    assert im.customers is customers and im.items is items
    # rows 30, 10, 99; cols c, a; customer 20 and item b dropped; filters ignored
    np.testing.assert_array_equal(im.matrix.toarray(), [[1, 1], [0, 2], [0, 0]])
    np.testing.assert_array_equal(im.counts.toarray(), [[1, 1], [0, 2], [0, 0]])


def test_test_period_maps_onto_training_ids():
    p = generate_purchases(n_customers=80, n_items=40, n_days=90, seed=4).purchases
    cut = p["timestamp"].quantile(0.7)
    train = build_interactions(p[p["timestamp"] < cut])
    test = build_interactions(p[p["timestamp"] >= cut], customers=train.customers,
                              items=train.items)
    assert test.shape == train.shape
    known = p[(p["timestamp"] >= cut) & p["customer_id"].isin(train.customers.ids)
              & p["item_id"].isin(train.items.ids)]
    assert test.counts.sum() == len(known)


def test_nonpositive_cells_dropped_and_missing_values():
    p = _lines()
    p.loc[0:1, "price"] = 0.0  # customer 10 item a: spend 0 -> cell dropped
    p.loc[4, "quantity"] = np.nan  # missing quantity counts as 1
    im = build_interactions(p, MatrixConfig(weighting="spend"))
    assert im.matrix[0, 0] == 0 and im.counts[0, 0] == 0
    assert im.matrix.nnz == im.counts.nnz == 5
    q = build_interactions(p, MatrixConfig(weighting="quantity"))
    assert q.matrix[1, 2] == 1.0


def test_string_customer_ids_categoricals_and_arrow_strings_agree():
    p = _lines()
    ref = build_interactions(p, MatrixConfig(weighting="count"))
    for dtype in ("category", "string[pyarrow]"):
        q = p.assign(item_id=p["item_id"].astype(dtype),
                     customer_id=p["customer_id"].astype(str).astype(dtype))
        im = build_interactions(q, MatrixConfig(weighting="count"))
        assert im.items.ids.tolist() == ["a", "b", "c"]
        assert im.customers.ids.tolist() == ["10", "20", "30"]
        np.testing.assert_array_equal(im.matrix.toarray(), ref.matrix.toarray())


def test_encode_ids_matches_idmap_from_values():
    rng = np.random.default_rng(0)
    ints = pd.Series(rng.integers(-5, 10**12, 500))  # wide range: hashing
    dense = pd.Series(rng.integers(-5, 300, 500))  # narrow range: lookup table
    strs = pd.Series(np.array(["x", "B", "a", None, "aa"], dtype=object)[rng.integers(0, 5, 50)])
    for s in (ints, dense, strs):
        codes, m = encode_ids(s)
        ref = IdMap.from_values(s)
        np.testing.assert_array_equal(m.ids, ref.ids)
        np.testing.assert_array_equal(codes, ref.index_of(s.to_numpy(), missing="ignore"))


def test_config_validation_and_user_errors():
    with pytest.raises(ValidationError):
        MatrixConfig(weighting="tf")
    with pytest.raises(ValidationError):
        MatrixConfig(half_lif_days=3)
    with pytest.raises(ValidationError):
        MatrixConfig(half_life_days=0)
    with pytest.raises(PatronError, match="'price'"):
        build_interactions(_lines().drop(columns="price"), MatrixConfig(weighting="spend"))
    with pytest.raises(PatronError, match="'timestamp'"):
        build_interactions(_lines().drop(columns="timestamp"), MatrixConfig(half_life_days=3))
