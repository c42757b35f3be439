"""features.synthetic: schema, determinism, planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt

from features import columns as C
from features.synthetic import generate_purchases


def test_schema_and_default_size():
    log = generate_purchases()
    p = log.purchases
    assert list(p.columns) == [C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.QUANTITY, C.PRICE,
                               C.ORDER_ID, C.CATEGORY, C.ITEM_NAME]
    assert p[C.CUSTOMER_ID].dtype == np.int64 and p[C.ORDER_ID].dtype == np.int64
    assert p[C.TIMESTAMP].dtype == "datetime64[ns]"
    assert p[C.QUANTITY].dtype == np.float64 and p[C.PRICE].dtype == np.float64
    assert p[C.ITEM_ID].str.fullmatch(r"I\d{4}").all()
    assert 2_000 < len(p) < 20_000
    assert p[C.CUSTOMER_ID].nunique() == 300 and p[C.ITEM_ID].nunique() <= 120
    assert p[C.TIMESTAMP].min() >= pd.Timestamp("2024-01-01")
    assert p[C.TIMESTAMP].max() < pd.Timestamp("2024-01-01") + pd.Timedelta(days=180)
    assert p[C.ORDER_ID].is_monotonic_increasing and p[C.TIMESTAMP].is_monotonic_increasing
    # one order = one customer at one moment
    per_order = p.groupby(C.ORDER_ID).agg(c=(C.CUSTOMER_ID, "nunique"), t=(C.TIMESTAMP, "nunique"))
    assert (per_order == 1).all().all()
    assert (p[C.PRICE] > 0).all() and (p[C.QUANTITY] >= 1).all()
    assert not p.duplicated([C.ORDER_ID, C.ITEM_ID]).any()  # one line per item and order


def test_deterministic_for_a_seed():
    a = generate_purchases(n_customers=50, n_items=40, seed=7)
    b = generate_purchases(n_customers=50, n_items=40, seed=7)
    c = generate_purchases(n_customers=50, n_items=40, seed=8)
    pdt.assert_frame_equal(a.purchases, b.purchases)
    pdt.assert_frame_equal(a.truth.repeat_intervals, b.truth.repeat_intervals)
    assert not a.purchases.equals(c.purchases)


def test_start_date_parameter():
    p = generate_purchases(n_customers=20, n_items=40, n_days=30, start="2023-06-01").purchases
    assert p[C.TIMESTAMP].min() >= pd.Timestamp("2023-06-01")
    assert p[C.TIMESTAMP].max() < pd.Timestamp("2023-07-01")


def test_customer_groups_prefer_their_category():
    log = generate_purchases()
    p = log.purchases.merge(log.truth.customer_groups, on=C.CUSTOMER_ID, suffixes=("", "_pref"))
    share = (p[C.CATEGORY] == p[C.CATEGORY + "_pref"]).mean()
    assert share > 0.7  # 0.75 preferred + planted lines of the same category


def test_premium_is_pricier_in_same_category():
    log = generate_purchases(seed=3)
    items = log.truth.items.set_index(C.ITEM_ID)
    pp = log.truth.premium_pairs
    cheap = items.loc[pp["cheap"]]
    prem = items.loc[pp["premium"]]
    assert (cheap[C.CATEGORY].to_numpy() == prem[C.CATEGORY].to_numpy()).all()
    assert (prem["base_price"].to_numpy() >= 2.5 * cheap["base_price"].to_numpy()).all()


def test_seasonal_items_only_in_window():
    log = generate_purchases(seed=1)
    s = log.truth.seasonal.merge(log.purchases, on=C.ITEM_ID)
    assert len(s) > 0
    assert ((s[C.TIMESTAMP] >= s["start"]) & (s[C.TIMESTAMP] < s["end"])).all()


def test_repeat_intervals_are_regular():
    log = generate_purchases(seed=2)
    truth = log.truth.repeat_intervals
    assert len(truth) > 50 and truth["interval_days"].between(7, 30).all()
    r = truth.merge(log.purchases, on=[C.CUSTOMER_ID, C.ITEM_ID])
    r = r.assign(day=r[C.TIMESTAMP].dt.normalize()).sort_values([C.CUSTOMER_ID, C.TIMESTAMP])
    gaps = r.groupby([C.CUSTOMER_ID, C.ITEM_ID])["day"].diff().dt.days
    dev = (gaps - r["interval_days"]).dropna()
    assert len(dev) > 100 and dev.abs().max() <= 1
    # staple items are bought only by their repeat customers
    staples = set(truth[C.ITEM_ID])
    buyers = log.purchases[log.purchases[C.ITEM_ID].isin(staples)]
    pairs = set(zip(buyers[C.CUSTOMER_ID], buyers[C.ITEM_ID], strict=True))
    assert pairs == set(zip(truth[C.CUSTOMER_ID], truth[C.ITEM_ID], strict=True))


def test_scales_to_a_million_lines_quickly():
    import time

    t0 = time.perf_counter()
    p = generate_purchases(n_customers=50_000, n_items=5_000, seed=0).purchases
    assert len(p) > 1_000_000
    assert time.perf_counter() - t0 < 30  # ~1-2 s unloaded; generous for a shared box
