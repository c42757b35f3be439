"""Validation and cleaning rules: every row is kept or counted under exactly one reason."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features import columns as C
from features.clean import (
    INVALID_REASONS,
    REASONS,
    CleanConfig,
    _duplicates,
    clean_purchases,
    merge_config,
    normalize_ids,
)
from features.errors import SchemaError, ValidationError
from features.ingest import ingest, load_dataset, read_purchases


def accounted(report: dict) -> bool:
    return report["rows_in"] == report["rows_kept"] + sum(report["dropped"].values())


def raw_log() -> pd.DataFrame:
    """One line per case; the comment names the reason it must get."""
    rows = [
        # customer, item, timestamp, quantity, price, order, category, department
        ("1", "A1", "2024-01-01 10:00", "2", "1.5", "100", "toys", "GEN"),  # kept
        ("1", "A2", "2024-01-01 10:00", "1", "2.0", "100", "toys", "GEN"),  # kept
        ("2", "A1", "not a date", "1", "1.5", "101", "toys", "GEN"),  # bad_timestamp
        ("2", "", "2024-01-02", "1", "1.5", "101", "toys", "GEN"),  # missing_item_id
        ("2", "A1", "2024-01-02", "two", "1.5", "101", "toys", "GEN"),  # bad_quantity
        ("2", "A1", "2024-01-02", "1", "cheap", "101", "toys", "GEN"),  # bad_price
        ("3", "A1", "2024-01-03", "-1", "1.5", "C102", "toys", "GEN"),  # cancellation
        ("3", "A1", "2024-01-03", "-1", "1.5", "102", "toys", "GEN"),  # return
        ("3", "A1", "2024-01-03", "0", "1.5", "102", "toys", "GEN"),  # zero_quantity
        (None, "A1", "2024-01-03", "1", "1.5", "103", "toys", "GEN"),  # guest
        ("4", "POST", "2024-01-04", "1", "1.5", "104", "toys", "GEN"),  # non_product (code)
        ("4", "gift_0001_10", "2024-01-04", "1", "10", "104", "toys", "GEN"),  # non_product (regex)
        ("4", "A3", "2024-01-04", "1", "1.5", "104", "fuel", "GEN"),  # excluded_category
        ("4", "A4", "2024-01-04", "1", "1.5", "104", "toys", "FUEL"),  # excluded_department
        ("4", "A5", "2024-01-04", "1", "0", "104", "toys", "GEN"),  # nonpositive_price
        ("1", "A1", "2024-01-01 10:00", "2", "1.5", "100", "toys", "GEN"),  # duplicate of row 1
        ("5", "A1", "2024-01-05", "1", "", "105", None, None),  # kept: price missing is allowed
    ]
    cols = [C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.QUANTITY, C.PRICE, C.ORDER_ID, C.CATEGORY,
            "department"]
    return pd.DataFrame(rows, columns=cols, dtype=object)


EXPECTED = [None, None, "bad_timestamp", "missing_item_id", "bad_quantity", "bad_price",
            "cancellation", "return", "zero_quantity", "guest", "non_product", "non_product",
            "excluded_category", "excluded_department", "nonpositive_price", "duplicate", None]

CFG = CleanConfig(
    cancel_prefixes=["C"], non_product_codes=["POST"], non_product_pattern=r"gift_\d{4}_\d+",
    exclude_categories=["fuel"], exclude_departments=["FUEL"],
)


def test_every_rule_counted_once_with_row_numbers():
    res = clean_purchases(raw_log(), CFG, source="t.csv")
    rep = res.report
    want = pd.Series([e for e in EXPECTED if e]).value_counts().to_dict()
    got = {k: v for k, v in rep["dropped"].items() if v}
    assert got == want
    assert set(rep["dropped"]) == set(REASONS)  # every rule reported, zero or not
    assert rep["rows_in"] == 17 and rep["rows_kept"] == 3 and accounted(rep)
    for i, reason in enumerate(EXPECTED):
        if reason:
            assert i + 1 in [e["row"] for e in rep["examples"][reason]], reason
    assert rep["examples"]["duplicate"][0] == {"row": 16, "column": None,
                                               "value": "duplicate of row 1"}
    assert rep["examples"]["bad_quantity"][0] == {"row": 5, "column": "quantity", "value": "two"}
    json.dumps(rep)  # JSON-able


def test_rejects_hold_invalid_rows_with_row_and_reason():
    res = clean_purchases(raw_log(), CFG)
    rej = res.rejects
    assert rej["row"].tolist() == [3, 4, 5, 6]
    assert rej["reason"].tolist() == ["bad_timestamp", "missing_item_id", "bad_quantity", "bad_price"]
    assert rej["value"].tolist() == ["not a date", "", "two", "cheap"]
    assert rej["raw_quantity"].tolist() == ["1", "1", "two", "1"]
    assert res.report["rows_rejected"] == 4


def test_output_types_and_values():
    p = clean_purchases(raw_log(), CFG).purchases
    # a text column stays text, exactly as given (issue 14: "007" must not become 7)
    assert p[C.CUSTOMER_ID].tolist() == ["1", "1", "5"]
    assert p[C.ITEM_ID].tolist() == ["A1", "A2", "A1"]
    assert p[C.TIMESTAMP].dtype == np.dtype("datetime64[ns]")
    assert p[C.QUANTITY].dtype == np.float64 and p[C.PRICE].dtype == np.float64
    assert np.isnan(p[C.PRICE].iloc[2])
    assert p[C.ORDER_ID].tolist() == ["100", "100", "105"]
    assert p[C.CATEGORY].tolist() == ["toys", "toys", None]


@pytest.mark.parametrize(
    "field,reason",
    [("drop_cancellations", "cancellation"), ("drop_returns", "return"),
     ("drop_zero_quantity", "zero_quantity"), ("drop_non_products", "non_product"),
     ("drop_nonpositive_price", "nonpositive_price"), ("drop_duplicates", "duplicate")],
)
def test_each_rule_can_be_turned_off(field, reason):
    on = clean_purchases(raw_log(), CFG).report
    off = clean_purchases(raw_log(), CFG.model_copy(update={field: False})).report
    assert on["dropped"][reason] > 0 and off["dropped"][reason] == 0
    assert accounted(off)
    if reason != "cancellation":  # a cancellation line has quantity -1: the return rule takes it
        assert off["rows_kept"] == on["rows_kept"] + on["dropped"][reason]


def test_guests_invalid_when_not_dropped_and_strict_names_them():
    cfg = CFG.model_copy(update={"drop_guests": False})
    res = clean_purchases(raw_log(), cfg)
    assert res.report["dropped"]["guest"] == 0
    assert res.report["dropped"]["missing_customer_id"] == 1
    assert 10 in res.rejects["row"].tolist()


def test_strict_raises_naming_source_row_column_value():
    with pytest.raises(ValidationError) as exc:
        clean_purchases(raw_log(), CFG, strict=True, source="shop.csv")
    msg = str(exc.value)
    assert "shop.csv: row 3, column 'timestamp'" in msg and "'not a date'" in msg
    assert "4 invalid rows" in msg and "1 bad_price" in msg


def test_missing_required_column_lists_found():
    raw = raw_log().drop(columns=[C.TIMESTAMP])
    with pytest.raises(SchemaError, match=r"missing required column 'timestamp'.*customer_id"):
        clean_purchases(raw, source="x.parquet")


def test_numeric_input_and_nan_duplicates():
    raw = pd.DataFrame({
        C.CUSTOMER_ID: [1.0, 1.0, np.nan, 2.0, 2.0],
        C.ITEM_ID: [10, 10, 11, 12, 12],
        C.TIMESTAMP: pd.to_datetime(["2024-01-01"] * 5),
        C.QUANTITY: [1, 1, 1, 1, 1],
        C.PRICE: [np.nan, np.nan, 1.0, np.inf, 2.0],
    })
    rep = clean_purchases(raw).report
    assert rep["dropped"]["duplicate"] == 1  # NaN price equals NaN price
    assert rep["dropped"]["guest"] == 1 and rep["dropped"]["bad_price"] == 1
    assert rep["rows_kept"] == 2 and accounted(rep)


def test_day_level_and_unix_seconds():
    raw = pd.DataFrame({C.CUSTOMER_ID: [1, 2], C.ITEM_ID: [1, 1],
                        C.TIMESTAMP: [1704103200, 1704189599]})
    p = clean_purchases(raw, CleanConfig(day_level=True)).purchases
    assert p[C.TIMESTAMP].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]


def test_mixed_timestamp_formats_and_timezones():
    raw = pd.DataFrame({C.CUSTOMER_ID: ["a", "b", "c"], C.ITEM_ID: ["x", "y", "z"],
                        C.TIMESTAMP: ["2024-01-01 10:00", "01/02/2024", "2024-01-03T10:00:00+01:00"]})
    with pytest.raises(ValueError, match="cannot tell day-first from month-first"):
        clean_purchases(raw)  # 01/02/2024 reads two ways: never guessed
    p = clean_purchases(raw, CleanConfig(dayfirst=False)).purchases
    assert p[C.TIMESTAMP].tolist() == [pd.Timestamp("2024-01-01 10:00"),
                                       pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03 09:00")]
    assert p[C.CUSTOMER_ID].tolist() == ["a", "b", "c"]


def test_normalize_ids():
    assert normalize_ids(pd.Series([1.0, 2.0])).dtype == np.int64
    assert normalize_ids(pd.Series([17850.0, 3.0])).tolist() == [17850, 3]
    assert normalize_ids(pd.Series(["17850.0", "3", "007"])).tolist() == ["17850.0", "3", "007"]
    assert normalize_ids(pd.Series(["85123A", "3"])).tolist() == ["85123A", "3"]


@pytest.mark.parametrize("seed", range(6))
def test_duplicates_exact_even_with_hash_collisions(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 2000))
    keys = {"a": rng.integers(0, 4, n), "b": rng.integers(0, 3, n).astype(float),
            "c": rng.integers(-1, 3, n)}
    keys["b"][rng.random(n) < 0.1] = np.nan
    rows = np.flatnonzero(rng.random(n) < 0.8)
    frame = pd.DataFrame({k: v[rows] for k, v in keys.items()})
    expected = rows[frame.duplicated().to_numpy()]
    first = dict(zip(rows, frame.assign(r=rows).groupby(list(keys), dropna=False)["r"]
                     .transform("min").to_numpy(), strict=True))
    hashes = [None, lambda k: np.zeros(len(k["a"]), np.uint64),  # every row collides
              lambda k: np.asarray(k["a"] % 2, np.uint64) << np.uint64(62)]
    for row_hash in hashes:
        dup, firsts = _duplicates(keys, rows) if row_hash is None else _duplicates(
            keys, rows, row_hash)
        assert np.array_equal(dup, expected)
        assert all(first[d] == f for d, f in zip(dup, firsts, strict=True))


@pytest.mark.parametrize("seed", range(4))
def test_accounting_holds_on_messy_random_logs(seed):
    rng = np.random.default_rng(seed)
    n = 500
    pick = lambda opts: rng.choice(np.array(opts, dtype=object), n)  # noqa: E731
    raw = pd.DataFrame({
        C.CUSTOMER_ID: pick(["1", "2", "3", None, "", "4.0"]),
        C.ITEM_ID: pick(["a", "b", "POST", None, "gift_0001_20", "c"]),
        C.TIMESTAMP: pick(["2024-01-01", "2024-01-02 10:00", "bad", None, "2024-13-01"]),
        C.QUANTITY: pick(["1", "2", "-1", "0", "x", None, "1e400"]),
        C.PRICE: pick(["1", "0", "-2", "y", None, "3.5"]),
        C.ORDER_ID: pick(["1", "C2", "3"]),
    })
    res = clean_purchases(raw, CFG)
    rep = res.report
    assert accounted(rep)
    n_invalid = sum(rep["dropped"][r] for r in INVALID_REASONS)
    assert len(res.rejects) == n_invalid == rep["rows_rejected"]
    assert len(res.purchases) == rep["rows_kept"]
    assert res.purchases[C.TIMESTAMP].notna().all() and (res.purchases[C.QUANTITY] > 0).all()


def test_merge_config_keeps_source_defaults():
    base = CleanConfig(cancel_prefixes=["C"], exclude_departments=["FUEL"])
    merged = merge_config(base, CleanConfig(exclude_departments=[]))
    assert merged.cancel_prefixes == ["C"] and merged.exclude_departments == []
    with pytest.raises(ValueError):
        CleanConfig(drop_everything=True)
    with pytest.raises(ValueError):
        CleanConfig(non_product_pattern="(")


def test_csv_and_parquet_give_the_same_purchases(tmp_path):
    raw = raw_log()
    raw.to_csv(tmp_path / "log.csv", index=False)
    raw.to_parquet(tmp_path / "log.parquet", index=False)
    a = ingest(tmp_path / "log.csv", tmp_path / "a", CFG)
    b = ingest(tmp_path / "log.parquet", tmp_path / "b", CFG)
    # the CSV's all-integer id columns are read as integers; the parquet's text stays text
    as_text = {C.CUSTOMER_ID: str, C.ORDER_ID: str}
    pd.testing.assert_frame_equal(a.purchases.astype(as_text), b.purchases.astype(as_text))
    assert a.report["dropped"] == b.report["dropped"]
    assert (tmp_path / "a" / "rejects.csv").exists() and (tmp_path / "b" / "rejects.parquet").exists()
    back = read_purchases(tmp_path / "a" / "purchases.parquet")
    pd.testing.assert_frame_equal(back, a.purchases)
    pd.testing.assert_frame_equal(load_dataset(tmp_path / "a"), a.purchases)
    pd.testing.assert_frame_equal(load_dataset(tmp_path / "log.csv", CFG), a.purchases)


def test_rules_that_cannot_apply_are_warned_about():
    raw = raw_log().drop(columns=["department", C.QUANTITY])
    rep = clean_purchases(raw, CFG).report
    assert "exclude_departments is set but the log has no 'department' column" in rep["warnings"]
    assert any("no 'quantity' column" in w for w in rep["warnings"])
    assert clean_purchases(raw_log(), CFG).report["warnings"] == []


def test_nullable_and_categorical_columns():
    raw = pd.DataFrame({
        C.CUSTOMER_ID: pd.array([1, 1, None, 2], dtype="Int64"),
        C.ITEM_ID: pd.Categorical(["a", "a", "b", "c"]),
        C.TIMESTAMP: pd.to_datetime(["2024-01-01 12:00"] * 4).tz_localize("Europe/Paris"),
        C.QUANTITY: pd.array([1, 1, 2, None], dtype="Int64"),
    })
    res = clean_purchases(raw)
    assert {k: v for k, v in res.report["dropped"].items() if v} == {
        "guest": 1, "bad_quantity": 1, "duplicate": 1}
    p = res.purchases
    assert p[C.CUSTOMER_ID].tolist() == [1] and p[C.ITEM_ID].tolist() == ["a"]
    assert p[C.TIMESTAMP].tolist() == [pd.Timestamp("2024-01-01 11:00")]  # UTC, naive
