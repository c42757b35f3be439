"""Schema mapping, adapters and their error messages; the Online Retail sample end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import columns as C
from features.adapters import ONLINE_RETAIL_PATH, load_raw
from features.clean import CleanConfig
from features.errors import PatronError, SchemaError
from features.ingest import load_dataset
from features.schema import apply_mapping, parse_mapping

SAMPLE = Path(__file__).parent / "data" / "online_retail_sample.parquet"


def test_parse_mapping():
    assert parse_mapping(["customer_id=CustomerID", " item_id = StockCode "]) == {
        "customer_id": "CustomerID", "item_id": "StockCode"}
    with pytest.raises(SchemaError, match="CANONICAL=COLUMN"):
        parse_mapping(["customer_id"])


def test_apply_mapping_renames_and_keeps_schema_columns_only():
    df = pd.DataFrame({"Cust": [1], "Sku": ["a"], "When": ["2024-01-01"], "quantity": [2],
                       "Country": ["UK"]})
    out = apply_mapping(df, {"customer_id": "Cust", "item_id": "Sku", "timestamp": "When"})
    assert list(out.columns) == [C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.QUANTITY]


def test_mapping_errors_name_the_problem():
    df = pd.DataFrame({"Cust": [1]})
    with pytest.raises(SchemaError, match=r"f.csv: --map customer_id=Kunde: no column 'Kunde' \(columns found: Cust\)"):
        apply_mapping(df, {"customer_id": "Kunde"}, "f.csv")
    with pytest.raises(SchemaError, match="'shopper' is not a purchase-log column"):
        apply_mapping(df, {"shopper": "Cust"}, "f.csv")


def test_missing_column_in_file_lists_found_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,sku,when\n1,a,2024-01-01\n")
    with pytest.raises(SchemaError) as exc:
        load_raw(path)
    msg = str(exc.value)
    assert f"{path}: missing required column 'customer_id'" in msg
    assert "columns found: user, sku, when" in msg and "--map customer_id=COLUMN" in msg
    raw = load_raw(path, {"customer_id": "user", "item_id": "sku", "timestamp": "when"})
    # ids are read as text and typed as integers only where nothing is lost ("1", not "007")
    assert raw.frame[C.CUSTOMER_ID].tolist() == [1]


def test_unknown_source_and_file_type(tmp_path):
    with pytest.raises(PatronError, match="no such file"):
        load_raw(tmp_path / "missing.csv")
    (tmp_path / "log.xlsx").write_text("x")
    with pytest.raises(PatronError, match="unknown file type"):
        load_raw(tmp_path / "log.xlsx")


def test_bad_rows_reported_with_file_row_numbers(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text(
        "cust,sku,ts,qty,unit\n"
        "1,a,2024-01-01,1,2.5\n"
        "1,b,yesterday,1,2.5\n"  # data row 2
        "2,a,2024-01-02,lots,2.5\n"  # data row 3
        "2,b,2024-01-02,1,\n"  # data row 4: missing price is allowed
        "2,c,2024-01-02,1,free\n"  # data row 5
        ",c,2024-01-03,1,1\n"  # data row 6: guest
    )
    mapping = {"customer_id": "cust", "item_id": "sku", "timestamp": "ts", "quantity": "qty",
               "price": "unit"}
    from features.ingest import ingest

    res = ingest(path, tmp_path / "out", mapping=mapping)
    ex = res.report["examples"]
    assert ex["bad_timestamp"] == [{"row": 2, "column": "timestamp", "value": "yesterday"}]
    assert ex["bad_quantity"] == [{"row": 3, "column": "quantity", "value": "lots"}]
    assert ex["bad_price"] == [{"row": 5, "column": "price", "value": "free"}]
    assert ex["guest"][0]["row"] == 6
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert rejects[["row", "reason"]].values.tolist() == [
        [2, "bad_timestamp"], [3, "bad_quantity"], [5, "bad_price"]]
    assert res.report["rows_kept"] == 2 and res.report["rows_in"] == 6


def _expected_sample_counts(df: pd.DataFrame) -> dict[str, int]:
    """The Online Retail rules written out plainly with pandas, in the documented order."""
    left = df.copy()
    out = {}
    steps = [
        ("cancellation", lambda d: d.InvoiceNo.str.startswith("C")),
        ("return", lambda d: d.Quantity < 0),
        ("zero_quantity", lambda d: d.Quantity == 0),
        ("guest", lambda d: d.CustomerID.isna()),
        ("non_product", lambda d: d.StockCode.isin(
            ["POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK",
             "PADS"]) | d.StockCode.str.fullmatch(r"gift_\d{4}_\d+")),
        ("nonpositive_price", lambda d: d.UnitPrice <= 0),
        ("duplicate", lambda d: d.duplicated(keep="first")),
    ]
    for name, rule in steps:
        hit = rule(left).to_numpy(dtype=bool)
        out[name] = int(hit.sum())
        left = left[~hit]
    out["kept"] = len(left)
    out["customers"] = left.CustomerID.nunique()
    out["items"] = left.StockCode.nunique()
    return out


def test_online_retail_sample_matches_plain_pandas():
    raw = pd.read_parquet(SAMPLE)
    assert len(raw) > 2000 and SAMPLE.stat().st_size < 1_000_000
    exp = _expected_sample_counts(raw)
    p = load_dataset(SAMPLE)
    rep = load_raw(SAMPLE)  # recognised as Online Retail by its columns
    assert rep.defaults.cancel_prefixes == ["C"]
    from features.clean import clean_purchases

    res = clean_purchases(rep.frame, rep.defaults)
    got = res.report["dropped"]
    for name in ("cancellation", "return", "zero_quantity", "guest", "non_product",
                 "nonpositive_price", "duplicate"):
        assert got[name] == exp[name], name
    assert all(got[name] > 0 for name in ("cancellation", "guest", "non_product",
                                          "nonpositive_price", "duplicate"))
    assert res.report["rows_kept"] == exp["kept"] == len(p)
    assert res.report["customers"] == exp["customers"]
    assert res.report["items"] == exp["items"]
    # CustomerID is a number column (float with NaN): int64; InvoiceNo is text ("C536379"): text
    assert p[C.CUSTOMER_ID].dtype == np.int64 and p[C.ORDER_ID].map(type).eq(str).all()
    assert p[C.ITEM_ID].map(type).eq(str).all()
    assert set(p.columns) == {C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.QUANTITY, C.PRICE,
                              C.ORDER_ID, C.ITEM_NAME}


def test_sample_csv_with_explicit_mapping_equals_parquet(tmp_path):
    raw = pd.read_parquet(SAMPLE)
    path = tmp_path / "retail.csv"
    # as a shop's export writes it: customer numbers without ".0" (a CSV that says "17850.0"
    # keeps that text: ids are read exactly as written)
    raw = raw.astype({"CustomerID": "Int64"})
    raw.rename(columns={"CustomerID": "Customer ID"}).to_csv(path, index=False)
    mapping = {"order_id": "InvoiceNo", "item_id": "StockCode", "item_name": "Description",
               "quantity": "Quantity", "timestamp": "InvoiceDate", "price": "UnitPrice",
               "customer_id": "Customer ID"}
    cfg = CleanConfig(cancel_prefixes=["C"], non_product_codes=["POST", "DOT", "M", "m", "C2",
                      "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS"],
                      non_product_pattern=r"gift_\d{4}_\d+")
    a = load_dataset(path, cfg, mapping)
    b = load_dataset(SAMPLE)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.skipif(not ONLINE_RETAIL_PATH.exists(), reason="Online Retail file not present")
def test_full_online_retail_matches_the_data_readme():
    base = CleanConfig(drop_non_products=False, drop_duplicates=False,
                       drop_nonpositive_price=False)
    p = load_dataset("online_retail", base)
    assert (len(p), p[C.CUSTOMER_ID].nunique(), p[C.ITEM_ID].nunique(),
            p[C.ORDER_ID].nunique()) == (397_924, 4_339, 3_665, 18_536)
    full = load_dataset("online_retail")
    assert 4_300 <= full[C.CUSTOMER_ID].nunique() < 4_339
    assert 3_600 <= full[C.ITEM_ID].nunique() < 3_665


def test_complete_journey_adapter():
    from features.clean import clean_purchases

    raw = load_raw("completejourney")
    assert len(raw.frame) == 1_469_307
    res = clean_purchases(raw.frame, raw.defaults, source=raw.source)
    rep = res.report
    assert rep["rows_in"] == rep["rows_kept"] + sum(rep["dropped"].values())
    assert rep["dropped"]["excluded_department"] > 0 and rep["dropped"]["zero_quantity"] == 8_869
    p = res.purchases
    assert not p["department"].isin(["FUEL", "MISCELLANEOUS"]).any()
    # household_id and basket_id are integer columns in the package: int64
    assert p[C.CUSTOMER_ID].dtype == np.int64 and p[C.ORDER_ID].dtype == np.int64
    assert (p[C.TIMESTAMP].dt.normalize() == p[C.TIMESTAMP]).all()  # day-level
    assert p[C.CATEGORY].notna().mean() > 0.99
    kept_fuel = load_dataset("completejourney", CleanConfig(exclude_departments=[]))
    assert kept_fuel["department"].eq("FUEL").any()
    # the FUEL/MISCELLANEOUS lines come back, less the few another rule (price 0) drops
    assert len(p) < len(kept_fuel) <= len(p) + rep["dropped"]["excluded_department"]


def test_malformed_files_are_one_line_errors(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("customer_id,item_id,timestamp\n1,a,2024-01-01\n2,b,2024-01-01,extra\n")
    with pytest.raises(PatronError, match=r"ragged.csv: cannot read csv: .*2,b,2024-01-01,extra"):
        load_raw(ragged)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PatronError, match="empty.csv: cannot read csv"):
        load_raw(empty)
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(PatronError, match="broken.parquet: cannot read parquet"):
        load_raw(broken)


def test_complete_journey_files_recognised_and_joined(tmp_path):
    tx = pd.DataFrame({
        "household_id": [1, 1, 2, 2], "store_id": 9, "basket_id": [10, 10, 11, 12],
        "product_id": [100, 101, 100, 999], "quantity": [2, 1, 0, 1],
        "sales_value": [3.0, 1.5, 0.0, 2.0], "retail_disc": 0.0, "coupon_disc": 0.0,
        "coupon_match_disc": 0.0, "week": 1,
        "transaction_timestamp": pd.to_datetime(["2017-01-01 10:11:12"] * 4),
    })
    products = pd.DataFrame({"product_id": [100, 101], "manufacturer_id": 1,
                             "department": ["GROCERY", "FUEL"], "brand": "x",
                             "product_category": ["MILK", "GAS"], "product_type": ["WHOLE", "UNL"],
                             "package_size": None})
    tx.to_csv(tmp_path / "transactions.csv", index=False)
    products.to_csv(tmp_path / "products.csv", index=False)
    p = load_dataset(tmp_path / "transactions.csv")
    # row 2 is FUEL (excluded), row 3 has quantity 0, row 4's product is unknown (kept)
    assert p[C.ITEM_ID].tolist() == [100, 999]
    assert p[C.PRICE].tolist() == [1.5, 2.0] and p[C.ORDER_ID].tolist() == [10, 12]
    assert p[C.CATEGORY].tolist() == ["MILK", None]
    assert p[C.TIMESTAMP].tolist() == [pd.Timestamp("2017-01-01")] * 2
