"""`patron ingest` end to end: files written, summary printed, errors as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from features.ingest import read_purchases
from patron.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).parent / "data" / "online_retail_sample.parquet"


def test_ingest_sample_writes_purchases_and_report(tmp_path, capsys):
    out = tmp_path / "clean"
    assert main(["ingest", str(SAMPLE), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["rows_in"] == report["rows_kept"] + sum(report["dropped"].values())
    for reason in ("cancellation", "guest", "non_product", "duplicate"):
        assert report["dropped"][reason] > 0
        assert reason in printed
    assert f"rows kept   {report['rows_kept']:>12,}" in printed
    p = read_purchases(out / "purchases.parquet")
    assert len(p) == report["rows_kept"] and report["customers"] == p["customer_id"].nunique()
    assert not (out / "rejects.parquet").exists()  # no invalid rows in the sample


def test_rule_flags_change_the_counts(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["ingest", str(SAMPLE), "-o", str(out), "--keep-duplicates",
                 "--keep-non-products", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped"]["duplicate"] == 0 and report["dropped"]["non_product"] == 0
    assert report["dropped"]["cancellation"] > 0  # the Online Retail defaults still apply
    assert report["config"]["drop_duplicates"] is False


def test_strict_fails_with_one_line_naming_row_and_column(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("customer_id,item_id,timestamp,quantity\n1,a,2024-01-01,1\n1,b,2024-01-01,x\n")
    out = tmp_path / "o"
    assert main(["ingest", str(path), "-o", str(out), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path}: row 2, column 'quantity'" in err and "'x'" in err
    assert not (out / "purchases.parquet").exists()
    assert main(["ingest", str(path), "-o", str(out)]) == 0  # default: rejects file instead
    rejects = pd.read_csv(out / "rejects.csv")
    assert rejects[["row", "reason", "value"]].values.tolist() == [[2, "bad_quantity", "x"]]


def test_missing_column_and_mapping(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("user,sku,when\n7,a,2024-01-01\n")
    assert main(["ingest", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing required column 'customer_id'" in err and "user, sku, when" in err
    argv = ["ingest", str(path), "-o", str(tmp_path / "o"), "--map", "customer_id=user",
            "--map", "item_id=sku", "--map", "timestamp=when"]
    assert main(argv) == 0
    assert read_purchases(tmp_path / "o")["customer_id"].tolist() == [7]


def test_bad_rule_value_is_a_user_error(tmp_path, capsys):
    assert main(["ingest", str(SAMPLE), "-o", str(tmp_path), "--non-product-pattern", "("]) == 2
    assert "non_product_pattern" in capsys.readouterr().err


def test_cli_in_a_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "patron.cli", "ingest", str(SAMPLE), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rows in" in proc.stdout and (tmp_path / "o" / "purchases.parquet").exists()


def test_config_file_sets_rules(tmp_path, capsys):
    cfg = tmp_path / "rules.json"
    cfg.write_text(json.dumps({"drop_guests": False, "non_product_codes": []}))
    out = tmp_path / "o"
    assert main(["ingest", str(SAMPLE), "-o", str(out), "--config", str(cfg), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped"]["guest"] == 0 and report["dropped"]["missing_customer_id"] > 0
    assert report["config"]["non_product_pattern"]  # the Online Retail default is kept
    assert (out / "rejects.parquet").exists()
    cfg.write_text(json.dumps({"drop_guest": False}))
    assert main(["ingest", str(SAMPLE), "-o", str(out), "--config", str(cfg)]) == 2
    assert "drop_guest" in capsys.readouterr().err
