"""Customer tables end to end: win-back list, customer_profile, summaries, save/load."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features.customers import (
    CustomerConfig,
    NESConfig,
    build_customer_tables,
    customer_profile,
    load_tables,
    save_tables,
    summarize,
    winback_list,
)
from features.customers.prep import prepare
from features.synthetic import generate_purchases


@pytest.fixture(scope="module")
def log():
    return generate_purchases(n_customers=120, n_items=48, n_days=150, seed=2).purchases


@pytest.fixture(scope="module")
def tables(log):
    return build_customer_tables(log)


def test_tables_cover_every_customer_once(log, tables):
    c = tables.customers
    assert c["customer_id"].is_unique and set(c["customer_id"]) == set(log["customer_id"])
    for col in ("recency", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_code",
                "value_segment", "value_segment_zh", "segment", "nes_stage", "cycle_days",
                "cycle_source", "cycle_note", "avg_order_value"):
        assert col in c.columns, col
    assert c["rfm_code"].str.fullmatch(r"[1-5]{3}").all()
    assert tables.reference_date == log["timestamp"].max().normalize() + pd.Timedelta(days=1)
    total = summarize(c, "segment")
    assert total["customers"].sum() == len(c)
    assert total["revenue_share"].sum() == pytest.approx(1.0)
    assert summarize(c, "value_segment")["zh"].str.endswith("客戶").all()


def test_one_purchase_customers_are_named_not_crashed():
    df = pd.DataFrame({
        "customer_id": [1, 1, 1, 1, 2, 3],
        "item_id": ["a", "a", "b", "a", "a", "b"],
        "timestamp": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-05", "2024-01-09",
                                     "2024-01-03", "2024-01-08"]),
        "quantity": 1.0, "price": 2.0,
    })
    t = build_customer_tables(df, config=CustomerConfig(nes=NESConfig(min_purchases=3)))
    c = t.customers.set_index("customer_id")
    assert c["own_cycle_days"].isna().tolist() == [False, True, True]
    assert c.loc[2, "cycle_note"].startswith("one purchase day")
    assert any("2 of 3 customers bought on one day only" in n for n in t.notes)


def test_winback_ranks_dozing_customers_by_value_and_offers_favourites_then_recs():
    rows = [  # shop cycle 10 days; reference date 2024-03-01, last observed day 2024-02-29
        *[(1, "a", d) for d in ("2024-01-11", "2024-01-21", "2024-01-31", "2024-02-10")],
        (1, "b", "2024-02-10"),  # idle 19: S1
        *[(2, "c", d) for d in ("2024-01-16", "2024-01-26", "2024-02-05")],  # idle 24: S2
        *[(3, "a", d) for d in ("2024-02-09", "2024-02-19", "2024-02-29")],  # active
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["quantity"] = 1.0
    df["price"] = df["customer_id"].map({1: 5.0, 2: 50.0, 3: 1.0})
    prepared = prepare(df, "2024-03-01")
    t = build_customer_tables(df, "2024-03-01", CustomerConfig(nes=NESConfig(min_purchases=3)))
    c = t.customers.set_index("customer_id")
    assert c["nes_stage"].to_dict() == {1: "S1", 2: "S2", 3: "E0"}
    recs = pd.DataFrame({"customer_id": [1, 1, 1, 2], "item_id": ["a", "z", "y", "q"],
                         "rank": [1, 3, 2, 1]})
    wb, offers = winback_list(c, prepared[0], recs)
    assert wb.index.tolist() == [2, 1]  # customer 2 spent 150, customer 1 spent 25
    assert wb["winback_rank"].tolist() == [1, 2]
    assert wb.loc[1, "favourite_items"] == "a; b"
    assert wb.loc[1, "recommended_items"] == "y; z"  # by rank, without the favourite a
    assert offers[offers["customer_id"] == 1]["source"].tolist() == [
        "favourite", "favourite", "recommended", "recommended"]


def test_customer_profile_is_json_safe_and_matches_string_ids(tables):
    c, rem = tables.customers, tables.reminders
    cid = int(rem["customer_id"].iloc[0])
    p = customer_profile(str(cid), c, rem, max_items=3)
    json.dumps(p)  # plain python types only
    row = c.set_index("customer_id").loc[cid]
    assert p["known"] and p["customer_id"] == cid
    assert p["rfm"]["rfm_code"] == row["rfm_code"] and p["segment"] == row["segment"]
    assert p["value_segment_zh"] == row["value_segment_zh"]
    assert p["nes"]["stage"] == row["nes_stage"]
    mine = rem[rem["customer_id"] == cid].sort_values("reminder_rank")
    assert [d["item_id"] for d in p["due_items"]] == mine["item_id"].head(3).tolist()
    assert customer_profile("no-such-customer", c, rem) == {
        "customer_id": "no-such-customer", "known": False}


def test_save_and_load_tables_round_trip(tmp_path, tables):
    paths = save_tables(tables, tmp_path / "t")
    assert all(p.exists() for p in paths)
    back = load_tables(tmp_path / "t")
    pd.testing.assert_frame_equal(back.customers, tables.customers, check_dtype=False)
    assert back.reference_date == tables.reference_date
    assert back.shop_cycle_days == tables.shop_cycle_days
    csv = pd.read_csv(tmp_path / "t" / "customers.csv", encoding="utf-8-sig")
    assert csv["value_segment_zh"].tolist() == tables.customers["value_segment_zh"].tolist()


def test_no_prices_warns_and_says_so_in_the_notes(log):
    with pytest.warns(UserWarning, match="no price column"):
        t = build_customer_tables(log.drop(columns="price"))
    assert any("Monetary is quantity" in n for n in t.notes)
    c = t.customers.set_index("customer_id")
    assert c["monetary"].sum() == pytest.approx(log["quantity"].sum())
