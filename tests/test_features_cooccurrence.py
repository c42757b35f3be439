"""features.cooccurrence: basket counts, support/confidence/lift, artifact arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.cooccurrence import (
    association_rules,
    basket_matrix,
    cooccurrence_counts,
    cross_sell_arrays,
)
from features.idmap import IdMap
from features.synthetic import generate_purchases

# 5 baskets: {a,b}, {a,b,c}, {a,c}, {b}, {a,b} (basket 2 lists b twice)
BASKETS = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (2, "c"), (2, "b"), (3, "a"), (3, "c"),
           (4, "b"), (5, "a"), (5, "b")]


def _purchases() -> pd.DataFrame:
    orders, items = zip(*BASKETS, strict=True)
    return pd.DataFrame({"customer_id": 1, "item_id": list(items), "order_id": list(orders),
                         "timestamp": pd.Timestamp("2024-01-01")})


def test_cooccurrence_counts_by_hand():
    b = basket_matrix(_purchases())
    assert b.n_baskets == 5 and b.items.ids.tolist() == ["a", "b", "c"]
    assert b.item_baskets.tolist() == [4, 4, 2]
    co = cooccurrence_counts(b).toarray()
    np.testing.assert_array_equal(co, [[4, 3, 2], [3, 4, 1], [2, 1, 2]])


def test_support_confidence_lift_by_hand():
    rules = association_rules(basket_matrix(_purchases()), min_support_baskets=1)
    r = rules.set_index(["antecedent", "consequent"])
    # a=0, b=1, c=2; n_a=4, n_b=4, n_c=2, N=5
    assert r.loc[(0, 1), "n_ab"] == 3
    assert r.loc[(0, 1), "support"] == 3 / 5
    assert r.loc[(0, 1), "confidence"] == 3 / 4
    assert np.isclose(r.loc[(0, 1), "lift"], 3 * 5 / (4 * 4))
    assert np.isclose(r.loc[(2, 0), "confidence"], 1.0)
    assert np.isclose(r.loc[(2, 0), "lift"], 2 * 5 / (2 * 4))
    assert len(rules) == 6  # every ordered pair, no self-pairs
    strict = association_rules(basket_matrix(_purchases()), min_support_baskets=2,
                               min_lift=1.0)
    assert set(zip(strict["antecedent"], strict["consequent"], strict=True)) == {(0, 2), (2, 0)}


def test_blocks_do_not_change_rules():
    p = generate_purchases(n_customers=100, n_items=60, seed=1).purchases
    b = basket_matrix(p)
    one = association_rules(b, min_support_baskets=2)
    many = association_rules(b, min_support_baskets=2, block_items=7)
    key = ["antecedent", "consequent"]
    pd.testing.assert_frame_equal(one.sort_values(key).reset_index(drop=True),
                                  many.sort_values(key).reset_index(drop=True))


def test_fallback_basket_is_customer_and_day():
    p = pd.DataFrame({
        "customer_id": [1, 1, 1, 2],
        "item_id": ["a", "b", "a", "b"],
        "timestamp": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 18:00",
                                     "2024-01-02 09:00", "2024-01-01 09:00"]),
    })
    b = basket_matrix(p)
    assert b.n_baskets == 3
    assert cooccurrence_counts(b).toarray()[0, 1] == 1


def test_cross_sell_arrays_on_given_items():
    items = IdMap(np.array(["c", "a", "b", "zz"]))
    out = cross_sell_arrays(_purchases(), items, min_support_baskets=2, min_confidence=0.5,
                            min_lift=1.0)
    assert out["n_baskets"] == 5
    assert out["item_baskets"].tolist() == [2, 4, 4, 0]
    lift, conf = out["xsell_lift"], out["xsell_confidence"]
    assert lift.shape == conf.shape == (4, 4)
    # rules passing: c -> a (conf 1, lift 1.25) and a -> c (conf 0.5, lift 1.25)
    assert lift.nnz == 2 and np.isclose(lift[0, 1], 1.25) and np.isclose(conf[1, 0], 0.5)


def test_synthetic_complements_have_top_lift():
    log = generate_purchases(seed=0)
    p = log.purchases
    items = IdMap.from_values(p["item_id"])
    out = cross_sell_arrays(p, items, max_per_item=5)
    lift = out["xsell_lift"]
    truth = log.truth.complements
    for anchor, group in truth.groupby("antecedent"):
        row = lift[items.index_of([anchor])[0]]
        top = set(items.ids[row.indices[np.argsort(-row.data)[: len(group)]]])
        assert top == set(group["consequent"]), anchor
