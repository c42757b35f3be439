"""features.item_features: item table and price tiers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import PatronError
from features.idmap import IdMap
from features.item_features import item_table, price_tiers
from features.synthetic import generate_purchases


def test_price_tiers_quantiles_small_groups_and_missing():
    price = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 4.0, 9.0, 5.0, np.nan, 3.0, 3.0, 8.0])
    group = np.array(["a"] * 10 + ["b", "b", "c", "c", "d", "d", "d"])
    t = price_tiers(price, group, n_tiers=3)
    assert t[:10].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert t[10:12].tolist() == [1, 3]  # two items: cheapest and dearest tier
    assert t[12] == 2 and pd.isna(t[13])  # one priced item: middle tier; no price: NA
    assert t[14:].tolist() == [1, 1, 3]  # equal prices share a tier


def test_item_table_columns_and_values():
    p = pd.DataFrame({
        "customer_id": [1, 1, 2, 2, 3, 3],
        "item_id": ["x", "x", "x", "y", "y", "z"],
        "price": [2.0, 4.0, 3.0, 10.0, 12.0, 0.0],
        "category": ["tea", "tea", "coffee", "tea", "tea", "tea"],
        "item_name": ["X", "X", "X2", "Y", "Y", "Z"],
    })
    t = item_table(p)
    assert list(t.columns) == ["item_id", "category", "price", "price_tier", "item_name",
                               "n_customers", "n_lines"]
    t = t.set_index("item_id")
    assert t.loc["x", "category"] == "tea" and t.loc["x", "item_name"] == "X"
    assert t.loc["x", "price"] == 3.0 and t.loc["y", "price"] == 11.0
    assert np.isnan(t.loc["z", "price"])  # non-positive prices ignored
    assert t.loc["x", "n_customers"] == 2 and t.loc["x", "n_lines"] == 3
    assert t.loc["x", "price_tier"] == 1 and t.loc["y", "price_tier"] == 3


def test_item_table_on_given_map_and_without_optional_columns():
    p = pd.DataFrame({"customer_id": [1, 2], "item_id": [5, 7], "price": [1.0, 3.0]})
    t = item_table(p, items=IdMap(np.array([7, 6])))
    assert t["item_id"].tolist() == [7, 6]
    assert t["n_lines"].tolist() == [1, 0] and t["n_customers"].tolist() == [1, 0]
    assert t["price"].iloc[0] == 3.0 and np.isnan(t["price"].iloc[1])
    assert t["category"].isna().all()
    with pytest.raises(PatronError, match="item_id"):
        item_table(p.drop(columns="item_id"))


def test_synthetic_premium_versions_sit_in_a_higher_tier():
    log = generate_purchases(seed=5)
    t = item_table(log.purchases).set_index("item_id")
    pp = log.truth.premium_pairs
    cheap = t.loc[pp["cheap"], "price_tier"].to_numpy()
    prem = t.loc[pp["premium"], "price_tier"].to_numpy()
    assert (prem > cheap).all() and (prem == 3).all()
    assert (t.loc[pp["premium"], "category"].to_numpy() == pp["category"].to_numpy()).all()


def test_most_frequent_category_and_name_ties_take_smallest():
    p = pd.DataFrame({
        "customer_id": [1, 2, 3, 4, 5],
        "item_id": ["x", "x", "y", "y", "y"],
        "category": ["b", "a", "c", None, None],
        "item_name": ["X1", "X0", "Y", "Y", "Y2"],
    })
    t = item_table(p).set_index("item_id")
    assert t.loc["x", "category"] == "a" and t.loc["y", "category"] == "c"
    assert t.loc["x", "item_name"] == "X0" and t.loc["y", "item_name"] == "Y"
    assert t["price_tier"].isna().all()  # no price column
