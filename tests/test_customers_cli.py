"""`patron segments` and `patron reminders` end to end on a synthetic log in a tmp dir."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from features.ingest import write_purchases
from features.synthetic import generate_purchases
from patron.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("customers")
    log = generate_purchases(n_customers=120, n_items=48, n_days=150, seed=4)
    return write_purchases(log.purchases, d / "purchases.parquet"), log.purchases


def test_segments_writes_tables_summary_and_png(tmp_path, data, capsys):
    path, purchases = data
    out = tmp_path / "seg"
    recs = pd.DataFrame({"customer_id": purchases["customer_id"].unique()[:50].astype(str),
                         "item_id": purchases["item_id"].iloc[0], "rank": 1})
    recs.to_csv(tmp_path / "recs.csv", index=False)
    assert main(["segments", "--data", str(path), "--out", str(out),
                 "--recs", str(tmp_path / "recs.csv")]) == 0
    printed = capsys.readouterr().out
    assert "RFM segments" in printed and "NES lifecycle" in printed and "重要" in printed
    for name in ("customers", "reminders", "winback", "offers"):
        assert (out / f"{name}.parquet").exists() and (out / f"{name}.csv").exists()
    customers = pd.read_parquet(out / "customers.parquet")
    assert len(customers) == purchases["customer_id"].nunique()
    assert {"rfm_code", "value_segment", "value_segment_zh", "segment", "nes_stage",
            "cycle_days"} <= set(customers.columns)
    summary = pd.read_csv(out / "summary_nes_stages.csv")
    assert summary["customers"].sum() == len(customers)
    png = (out / "segments.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    winback = pd.read_parquet(out / "winback.parquet")
    assert set(winback["nes_stage"]) <= {"S1", "S2"}
    assert winback["monetary"].is_monotonic_decreasing


def test_reminders_cli_lists_and_evaluates(tmp_path, data, capsys):
    path, _ = data
    assert main(["reminders", "--data", str(path), "--out", str(tmp_path / "r.csv"),
                 "--max-per-customer", "3"]) == 0
    rem = pd.read_csv(tmp_path / "r.csv")
    assert len(rem) > 0 and rem["reminder_rank"].max() <= 3
    capsys.readouterr()
    assert main(["reminders", "--data", str(path), "--evaluate", "--horizon-days", "21"]) == 0
    printed = capsys.readouterr().out
    assert "baseline: bought >= 2x" in printed and "precision" in printed


def test_bad_reference_date_is_one_line_and_exit_2(data):
    path, _ = data
    proc = subprocess.run(
        [sys.executable, "-m", "patron.cli", "segments", "--data", str(path),
         "--reference-date", "1999-01-01", "--out", "/nonexistent/never"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "reference date 1999-01-01" in proc.stderr


def test_segments_offers_a_saved_models_top_n_in_the_winback_list(tmp_path, data):
    from features.matrix import build_interactions
    from training.models.registry import get_model

    path, purchases = data
    model = get_model("popularity")().fit(build_interactions(purchases))
    model.save(tmp_path / "model")
    out = tmp_path / "seg"
    assert main(["segments", "--data", str(path), "--out", str(out),
                 "--model", str(tmp_path / "model"), "--n-recs", "2"]) == 0
    offers = pd.read_parquet(out / "offers.parquet")
    winback = pd.read_parquet(out / "winback.parquet")
    rec = offers[offers["source"] == "recommended"]
    assert len(winback) > 0 and set(rec["customer_id"]) == set(winback["customer_id"])
    assert rec.groupby("customer_id").size().max() == 2
    fav = offers[offers["source"] == "favourite"]
    both = rec.merge(fav, on=["customer_id", "item_id"])
    assert both.empty  # recommendations never repeat the customer's favourites
