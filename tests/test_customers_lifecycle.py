"""NES stages and repurchase intervals against small hand-computed cases (and planted truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.customers import NESConfig, RepurchaseConfig, nes_stages, repurchase_intervals
from features.errors import PatronError, SchemaError
from features.synthetic import generate_purchases


def _days_log(days: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(c, "x", d) for c, ds in days.items() for d in ds]
    df = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"]) + pd.Timedelta(hours=9)
    return df


NES_DAYS = {
    "P": ["2024-01-01", "2024-01-11", "2024-01-21", "2024-02-20"],  # gaps 10,10,30 -> own 10
    "Q": ["2024-01-01", "2024-01-06", "2024-01-11", "2024-02-05"],  # gaps 5,5,25 -> own 5
    "R": ["2024-02-10", "2024-02-17"],  # one gap of 7: too few days, shop cycle
    "S": ["2024-02-27"],  # one purchase, recent: new
    "T": ["2024-02-10"],  # one purchase, older
    "U": ["2024-01-20", "2024-01-30", "2024-02-09"],  # own 10, idle 20 = exactly 2 cycles
}


def test_nes_stages_by_hand():
    cfg = NESConfig(min_purchases=3)
    t, shop = nes_stages(_days_log(NES_DAYS), "2024-03-01", cfg)  # last observed day 2024-02-29
    assert shop == 8.5  # median of customer medians 10, 5, 7, 10
    assert t["own_cycle_days"].to_dict() == pytest.approx(
        {"P": 10.0, "Q": 5.0, "R": np.nan, "S": np.nan, "T": np.nan, "U": 10.0}, nan_ok=True
    )
    assert t["cycle_days"].to_dict() == {"P": 10, "Q": 5, "R": 8.5, "S": 8.5, "T": 8.5, "U": 10}
    assert t["idle_days"].to_dict() == {"P": 9, "Q": 24, "R": 12, "S": 2, "T": 19, "U": 20}
    # P 9/10 active; Q 24/5 sleeping; R 12/8.5 dozing; S new; T 19/8.5 half-asleep; U 20/10 dozing
    assert t["nes_stage"].to_dict() == {
        "P": "E0", "Q": "S3", "R": "S1", "S": "N", "T": "S2", "U": "S1",
    }
    assert t["cycle_source"].to_dict()["R"] == "shop"
    assert "one purchase" in t.loc["S", "cycle_note"] and "fewer than 3" in t.loc["R", "cycle_note"]
    assert t.loc["P", "cycle_note"] == ""


def test_nes_settings_pooled_cycle_fixed_cycle_and_multipliers():
    _, pooled = nes_stages(_days_log(NES_DAYS), "2024-03-01",
                           NESConfig(min_purchases=3, shop_cycle="pooled_median"))
    assert pooled == 10.0  # gaps 5,5,7,10,10,10,10,25,30
    t, shop = nes_stages(_days_log(NES_DAYS), "2024-03-01",
                         NESConfig(min_purchases=10, cycle_days=30, active_cycles=0.5,
                                   dozing_cycles=0.7, half_asleep_cycles=0.9))
    assert shop == 30 and (t["cycle_source"] == "shop").all()
    # idle 9 / 30 = 0.3 active; 24 / 30 = 0.8 half-asleep; age of S 2 days <= 30: new
    assert t["nes_stage"].to_dict()["P"] == "E0" and t["nes_stage"].to_dict()["Q"] == "S2"
    with pytest.raises(ValueError, match="active_cycles < dozing_cycles"):
        NESConfig(active_cycles=2, dozing_cycles=1)


def test_nes_without_any_repeat_customer_says_what_to_set():
    with pytest.raises(PatronError, match="cycle_days"):
        nes_stages(_days_log({"S": ["2024-02-27"], "T": ["2024-02-10"]}))


def _repurchase_log() -> pd.DataFrame:
    rows = [
        (1, "a", "2024-01-01"), (1, "a", "2024-01-08"), (1, "a", "2024-01-08"),  # same day twice
        (1, "a", "2024-01-15"), (1, "a", "2024-01-29"),  # gaps 7, 7, 14
        (2, "a", "2024-01-01"), (2, "a", "2024-01-11"),  # one gap of 10
        (2, "b", "2024-01-11"),  # bought once; nobody repeats b
        (3, "b", "2024-01-05"),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["category"] = "snacks"
    return df


def test_repurchase_intervals_by_hand():
    t = repurchase_intervals(_repurchase_log(), config=RepurchaseConfig(min_repeats=2))
    t = t.set_index(["customer_id", "item_id"])
    r1a = t.loc[(1, "a")]
    assert (r1a["purchase_days"], r1a["repeats"]) == (4, 3)
    assert r1a["own_interval"] == 7.0 and r1a["interval"] == 7.0 and r1a["interval_source"] == "own"
    assert r1a["gap_mean"] == pytest.approx(28 / 3)
    assert r1a["gap_cv"] == pytest.approx(np.std([7, 7, 14], ddof=1) / (28 / 3))
    r2a = t.loc[(2, "a")]  # one repeat < min_repeats: the item's median of customer medians (7, 10)
    assert np.isnan(r2a["own_interval"]) and r2a["interval"] == 8.5
    assert r2a["interval_source"] == "item"
    assert t.loc[(2, "b"), "interval_source"] == "none" and np.isnan(t.loc[(2, "b"), "interval"])
    assert t.loc[(3, "b"), "last_day"] == pd.Timestamp("2024-01-05")
    # min_repeats=1: customer 2 has an interval of their own
    own = repurchase_intervals(_repurchase_log(), config=RepurchaseConfig(min_repeats=1))
    assert own.set_index(["customer_id", "item_id"]).loc[(2, "a"), "interval"] == 10.0


def test_repurchase_by_category_and_missing_category():
    t = repurchase_intervals(_repurchase_log(), key="category").set_index("customer_id")
    assert t.loc[2, "purchase_days"] == 2 and t.loc[2, "repeats"] == 1  # a and b on the 11th
    assert t.loc[1, "interval"] == 7.0
    with pytest.raises(SchemaError, match="category"):
        repurchase_intervals(_repurchase_log().drop(columns="category"), key="category")


def test_repurchase_intervals_recover_planted_intervals():
    log = generate_purchases(n_customers=80, n_items=48, n_days=150, seed=3)
    truth = log.truth.repeat_intervals
    t = repurchase_intervals(log.purchases).merge(truth, on=["customer_id", "item_id"])
    assert len(t) == len(truth) > 10
    assert (t["interval_source"] == "own").all()
    assert (t["own_interval"] - t["interval_days"]).abs().max() <= 1.0  # jitter is +-1 day


@pytest.mark.parametrize("values", [
    np.array([3.0, 1.0, 2.0, 10.0, 4.5, 7.0, 7.0]),  # day gaps / half-day medians: integer sort
    np.array([0.3, 1.7, 2.2, 10.1, 4.4, 7.9, 7.0]),  # any floats: lexsort
])
def test_group_median_matches_pandas(values):
    from features.customers.repurchase import _group_median

    group = np.array([0, 0, 0, 2, 2, 2, 2])
    expected = pd.Series(values).groupby(group).median().reindex(range(4)).to_numpy()
    np.testing.assert_allclose(_group_median(values, group, 4), expected)
