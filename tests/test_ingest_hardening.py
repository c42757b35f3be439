"""Issue 14, ingest side: dates never read wrong silently, ids kept exactly as given, one
reader for compressed files, no empty result by accident, output modes from the umask."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import columns as C
from features.clean import CleanConfig, clean_purchases
from features.errors import PatronError, ValidationError
from features.ingest import ingest, load_dataset
from features.timestamps import TimestampError

ROOT = Path(__file__).resolve().parents[1]
MAP = {"customer_id": "cust", "item_id": "sku", "timestamp": "when"}


def _uk_export(tmp_path: Path) -> Path:
    """A British shop's export: day/month/year, as Online Retail's own shop writes it."""
    days = pd.date_range("2010-12-01 08:26", "2011-01-07 17:00", freq="7h")
    rows = [f"{i % 40},SKU{i % 25:03d},{d.strftime('%d/%m/%Y %H:%M')}"
            for i, d in enumerate(days)]
    path = tmp_path / "uk.csv"
    path.write_text("cust,sku,when\n" + "\n".join(rows) + "\n")
    return path


def test_day_first_export_is_read_day_first_and_says_so(tmp_path):
    res = ingest(_uk_export(tmp_path), tmp_path / "out", mapping=MAP)
    ts = res.purchases[C.TIMESTAMP]
    assert ts.min() == pd.Timestamp("2010-12-01 08:26") and ts.max() <= pd.Timestamp("2011-01-07 17:00")
    reading = res.report["timestamps"]
    assert reading["dayfirst"] is True and reading["source"] == "detected"
    assert "day-first" in reading["description"]


def test_iso_and_day_first_mixed_read_both_right_and_duplicates_unchanged(tmp_path):
    base = pd.DataFrame({C.CUSTOMER_ID: ["a", "a", "b", "b", "c"],
                         C.ITEM_ID: ["x", "x", "y", "y", "z"],
                         C.TIMESTAMP: ["2010-12-13 10:00", "13/12/2010 10:00", "2010-12-02",
                                       "02/12/2010", "05/01/2011 09:30"]})
    p = clean_purchases(base).purchases
    res = clean_purchases(base)
    # 13/12/2010 is day-first, so 02/12/2010 is the 2nd of December too, and the ISO and the
    # day-first spelling of one purchase are the same line: two duplicates
    assert res.report["dropped"]["duplicate"] == 2
    assert sorted(p[C.TIMESTAMP].tolist()) == [pd.Timestamp("2010-12-02"),
                                               pd.Timestamp("2010-12-13 10:00"),
                                               pd.Timestamp("2011-01-05 09:30")]


def test_ambiguous_dates_need_a_flag_and_the_flag_is_used(tmp_path):
    raw = pd.DataFrame({C.CUSTOMER_ID: ["a", "b"], C.ITEM_ID: ["x", "y"],
                        C.TIMESTAMP: ["01/02/2024", "03/04/2024"]})
    with pytest.raises(TimestampError, match="--dayfirst, --monthfirst or --date-format"):
        clean_purchases(raw)
    uk = clean_purchases(raw, CleanConfig(dayfirst=True))
    us = clean_purchases(raw, CleanConfig(dayfirst=False))
    assert uk.purchases[C.TIMESTAMP].tolist() == [pd.Timestamp("2024-02-01"), pd.Timestamp("2024-04-03")]
    assert us.purchases[C.TIMESTAMP].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-03-04")]
    assert uk.report["timestamps"]["source"] == "given"
    fmt = clean_purchases(raw, CleanConfig(date_format="%d/%m/%Y"))
    assert fmt.purchases[C.TIMESTAMP].tolist() == uk.purchases[C.TIMESTAMP].tolist()


def test_dates_that_disagree_on_day_and_month_are_an_error():
    raw = pd.DataFrame({C.CUSTOMER_ID: ["a", "b"], C.ITEM_ID: ["x", "y"],
                        C.TIMESTAMP: ["13/01/2024", "01/13/2024"]})
    with pytest.raises(TimestampError, match="disagree on the order of day and month"):
        clean_purchases(raw)


def test_excel_serials_and_unix_seconds_by_their_range():
    excel = pd.DataFrame({C.CUSTOMER_ID: [1, 2], C.ITEM_ID: [1, 2], C.TIMESTAMP: [40513.35, 40550.5]})
    p = clean_purchases(excel).purchases
    assert p[C.TIMESTAMP].tolist() == [pd.Timestamp("2010-12-01 08:24"), pd.Timestamp("2011-01-07 12:00")]
    unix = excel.assign(**{C.TIMESTAMP: [1291191960, 1294401600]})
    assert clean_purchases(unix).purchases[C.TIMESTAMP].min() == pd.Timestamp("2010-12-01 08:26")
    text = excel.assign(**{C.TIMESTAMP: ["40513.35", "40550.5"]})  # Excel serials as text
    assert clean_purchases(text).purchases[C.TIMESTAMP].tolist() == p[C.TIMESTAMP].tolist()
    mixed = excel.assign(**{C.TIMESTAMP: [40513.35, 1294401600]})
    with pytest.raises(TimestampError, match="span several units"):
        clean_purchases(mixed)


def test_implausible_dates_are_rejected_per_row_and_a_misread_column_is_an_error():
    now = pd.Timestamp.now()
    raw = pd.DataFrame({C.CUSTOMER_ID: list("abcdef"), C.ITEM_ID: list("xyzxyz"),
                        C.TIMESTAMP: ["2024-01-01", "1970-01-01", str(now + pd.Timedelta(days=30)),
                                      "2024-01-02", "2024-01-03", "2024-01-04"]})
    res = clean_purchases(raw)
    assert res.report["dropped"]["implausible_timestamp"] == 2
    assert res.rejects["reason"].tolist() == ["implausible_timestamp"] * 2
    wrong = raw.assign(**{C.TIMESTAMP: ["1970-01-01"] * 5 + ["2024-01-01"]})
    with pytest.raises(TimestampError, match="5 of 6 timestamps"):
        clean_purchases(wrong)


def test_a_file_with_no_usable_row_is_an_error_unless_asked(tmp_path):
    only_header = tmp_path / "empty.csv"
    only_header.write_text("cust,sku,when\n")
    with pytest.raises(ValidationError, match="no usable row"):
        ingest(only_header, tmp_path / "out", mapping=MAP)
    assert not (tmp_path / "out" / "purchases.parquet").exists()
    res = ingest(only_header, tmp_path / "out", mapping=MAP, allow_empty=True)
    assert res.report["rows_kept"] == 0 and (tmp_path / "out" / "purchases.parquet").exists()
    unreadable = tmp_path / "bad.csv"
    unreadable.write_text("cust,sku,when\n1,a,soon\n2,b,later\n")
    with pytest.raises(PatronError, match="cannot be read"):
        ingest(unreadable, tmp_path / "out2", mapping=MAP)
    cli = subprocess.run([sys.executable, "-m", "patron.cli", "ingest", str(only_header),
                          "-o", str(tmp_path / "cli"), "--map", "customer_id=cust",
                          "--map", "item_id=sku", "--map", "timestamp=when"],
                         capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 2 and "no usable row" in cli.stderr


def test_ids_keep_their_given_form(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("cust,sku,when\n007,0100,2024-01-01\n7,100,2024-01-02\n"
                    "0100,A1,2024-01-03\n100,100,2024-01-04\n")
    p = load_dataset(path, mapping=MAP)
    assert p[C.CUSTOMER_ID].tolist() == ["007", "7", "0100", "100"]  # four customers, not two
    assert sorted(p[C.ITEM_ID].unique()) == ["0100", "100", "A1"]
    plain = tmp_path / "plain.csv"
    plain.write_text("cust,sku,when\n7,100,2024-01-02\n12,5,2024-01-03\n")
    q = load_dataset(plain, mapping=MAP)
    # an all-integer column loses nothing as integers: int64, as before
    assert q[C.CUSTOMER_ID].dtype == np.int64 and q[C.CUSTOMER_ID].tolist() == [7, 12]
    text = pd.DataFrame({C.CUSTOMER_ID: ["007", "7"], C.ITEM_ID: ["1", "2"],
                         C.TIMESTAMP: ["2024-01-01", "2024-01-02"]})
    assert clean_purchases(text).purchases[C.CUSTOMER_ID].tolist() == ["007", "7"]


def _compressed(tmp_path: Path, text: str) -> list[Path]:
    out = []
    for suffix, write in ((".gz", lambda p, b: p.write_bytes(gzip.compress(b))),
                          (".bz2", lambda p, b: p.write_bytes(bz2.compress(b))),
                          (".xz", lambda p, b: p.write_bytes(lzma.compress(b)))):
        p = tmp_path / f"log.csv{suffix}"
        write(p, text.encode())
        out.append(p)
    z = tmp_path / "log.csv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("export/log.csv", text)
    out.append(z)
    return out


def test_compressed_files_are_read_by_one_reader(tmp_path):
    text = "CUSTOMER_ID,PRODUCT_ID,DATE\n1,a,2024-01-01\n2,b,2024-01-02\n"
    mapping = {"customer_id": "CUSTOMER_ID", "item_id": "PRODUCT_ID", "timestamp": "DATE"}
    plain = tmp_path / "plain.csv"
    plain.write_text(text)
    want = load_dataset(plain, mapping=mapping)
    for path in _compressed(tmp_path, text):
        got = load_dataset(path, mapping=mapping)
        pd.testing.assert_frame_equal(got, want, obj=path.name)
        with pytest.raises(PatronError, match=r"no column 'CUSTOMER' \(columns found: "
                                              r"CUSTOMER_ID, PRODUCT_ID, DATE\)"):
            load_dataset(path, mapping={**mapping, "customer_id": "CUSTOMER"})


def test_output_files_follow_the_umask(tmp_path):
    path = _uk_export(tmp_path)
    old = os.umask(0o022)
    try:
        ingest(path, tmp_path / "out", mapping=MAP)
    finally:
        os.umask(old)
    for name in ("purchases.parquet", "report.json"):
        mode = stat.S_IMODE((tmp_path / "out" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))
