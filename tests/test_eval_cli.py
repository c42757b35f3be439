"""`patron evaluate` end to end on a small synthetic log; the recs file re-scored by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features import columns as C
from features.ingest import write_purchases
from features.synthetic import generate_purchases
from patron.cli import main

HOLDOUT = 21


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    purchases = generate_purchases(n_customers=120, n_items=80, n_days=120, seed=5).purchases
    path = tmp_path_factory.mktemp("eval") / "purchases.parquet"
    write_purchases(purchases, path)
    return path


def _pairs(df: pd.DataFrame) -> set:
    return set(zip(df[C.CUSTOMER_ID], df[C.ITEM_ID], strict=True))


def test_evaluate_cli_json_and_recs_rescored_independently(log_path, tmp_path, capsys):
    out_json, out_recs = tmp_path / "m.json", tmp_path / "recs.csv"
    rc = main([
        "evaluate", "--data", str(log_path), "--holdout-days", str(HOLDOUT), "--k", "5,10",
        "--json", str(out_json), "--recs-out", str(out_recs),
    ])
    text = capsys.readouterr().out
    assert rc == 0
    assert "mode new" in text and "mode repeat" in text and "repeat_buy" in text
    payload = json.loads(out_json.read_text())
    metrics = pd.DataFrame(payload["metrics"])
    assert set(metrics["model"]) == {"popularity", "recent_popularity", "repeat_buy"}
    assert set(metrics["k"]) == {5, 10} and set(metrics["mode"]) == {"new", "repeat"}
    assert payload["split"]["holdout_days"] == HOLDOUT

    # independent re-scoring: rebuild the split by hand from the raw log
    log = pd.read_parquet(log_path)
    cutoff = log[C.TIMESTAMP].max().normalize() + pd.Timedelta(days=1 - HOLDOUT)
    train, test = log[log[C.TIMESTAMP] < cutoff], log[log[C.TIMESTAMP] >= cutoff]
    train_pairs = _pairs(train)
    known_items = set(train[C.ITEM_ID])
    test = test[test[C.CUSTOMER_ID].isin(set(train[C.CUSTOMER_ID]))]
    test = test[test[C.ITEM_ID].isin(known_items)]
    relevant = {"repeat": _pairs(test), "new": _pairs(test) - train_pairs}

    recs = pd.read_csv(out_recs)
    assert list(recs.columns) == ["model", "mode", C.CUSTOMER_ID, C.ITEM_ID, C.RANK, C.SCORE]
    for (model, mode), g in recs.groupby(["model", "mode"]):
        rel = relevant[mode]
        rel_customers = {c for c, _ in rel}
        assert set(g[C.CUSTOMER_ID]) == rel_customers  # evaluated = customers with relevant items
        if mode == "new":
            assert not _pairs(g) & train_pairs  # bought items were filtered
        top = g[g[C.RANK] <= 10]
        hits = np.array([(c, i) in rel for c, i in zip(top[C.CUSTOMER_ID], top[C.ITEM_ID], strict=True)])
        per_customer = pd.Series(hits).groupby(top[C.CUSTOMER_ID].to_numpy()).sum() / 10
        want = metrics[(metrics["model"] == model) & (metrics["mode"] == mode)
                       & (metrics["metric"] == "precision") & (metrics["k"] == 10)]
        assert per_customer.mean() == pytest.approx(float(want["value"].iloc[0]), abs=1e-9)
        assert payload["n_customers"][mode] == len(rel_customers)


def test_evaluate_cli_last_basket_and_own_files(log_path, tmp_path, capsys):
    assert main(["evaluate", "--data", str(log_path), "--last-basket", "--models", "repeat_buy",
                 "--k", "5"]) == 0
    assert "split last_basket" in capsys.readouterr().out
    log = pd.read_parquet(log_path)
    cut = log[C.TIMESTAMP].quantile(0.8)
    write_purchases(log[log[C.TIMESTAMP] < cut], tmp_path / "train.parquet")
    write_purchases(log[log[C.TIMESTAMP] >= cut], tmp_path / "test.parquet")
    out_json = tmp_path / "own.json"
    assert main(["evaluate", "--train", str(tmp_path / "train.parquet"), "--test",
                 str(tmp_path / "test.parquet"), "--models", "popularity", "--json",
                 str(out_json)]) == 0
    assert json.loads(out_json.read_text())["split"]["kind"] == "files"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--models", "nope"], "unknown model"),
        (["--cutoff", "1999-01-01"], "outside the data"),
        (["--train", "a.parquet", "--test", "b.parquet"], "not both"),
        (["--holdout-days", "-3"], "must be positive"),
        (["--k", "0"], None),  # argparse rejects it (exit 2 via SystemExit)
    ],
)
def test_evaluate_cli_user_errors(log_path, capsys, extra, message):
    args = ["evaluate", "--data", str(log_path), *extra]
    if message is None:
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        return
    assert main(args) == 2
    assert message in capsys.readouterr().err
