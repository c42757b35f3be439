"""Offline compare: intervals, paired differences, external artifacts, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.compare import compare, format_compare
from features.errors import PatronError
from features.matrix import MatrixConfig, build_interactions
from features.synthetic import generate_purchases
from training.evaluate import evaluate_models, fit_model
from training.models.registry import MODELS
from training.split import split_global_time


@pytest.fixture(scope="module")
def purchases():
    return generate_purchases(n_customers=400, n_items=100, n_days=150, seed=3).purchases


def test_compare_matches_evaluate_and_finds_the_better_model(purchases):
    res = compare(purchases, "popularity,itemknn", reference="popularity", k=10,
                  holdout_days=28, n_boot=400)
    m = res.metrics.set_index(["model", "mode", "metric"])
    # the point values are exactly training.evaluate's
    split = split_global_time(purchases, holdout_days=28)
    train = build_interactions(split.train, MatrixConfig())
    ev = evaluate_models({n: fit_model(MODELS[n](), train, split.train)
                          for n in ("popularity", "itemknn")}, train, split.test, k=10)
    for mode in ("new", "repeat"):
        for metric in ("ndcg", "recall", "hit_rate", "novelty", "avg_popularity", "coverage"):
            assert m.loc[("itemknn", mode, metric), "value"] == pytest.approx(
                ev.value("itemknn", mode, metric, 10))
    ci = res.metrics[res.metrics["metric"] != "coverage"]
    assert (ci["low"] <= ci["value"] + 1e-9).all() and (ci["value"] <= ci["high"] + 1e-9).all()
    d = res.differences.set_index(["model", "mode", "metric"]).loc[("itemknn", "repeat", "ndcg")]
    assert d["diff_low"] > 0 and d["p_bootstrap"] < 0.01 and d["p_ttest"] < 0.01
    text = format_compare(res)
    assert "difference against popularity" in text and "itemknn" in text


def test_artifact_spec_scores_like_the_same_model_fit_here(purchases, tmp_path):
    split = split_global_time(purchases, holdout_days=28)
    train = build_interactions(split.train, MatrixConfig())
    fit_model(MODELS["itemknn"](), train, split.train).save(tmp_path / "knn")
    res = compare(purchases, ["itemknn", f"artifact:{tmp_path / 'knn'}"], n_boot=200)
    m = res.metrics.pivot_table(index=["mode", "metric"], columns="model", values="value")
    assert np.allclose(m["itemknn"], m[f"artifact:{tmp_path / 'knn'}"])
    d = res.differences
    assert np.allclose(d["diff"], 0) and (d["p_bootstrap"] == 1).all()
    assert any("training period is unknown" in w for w in res.warnings)


def test_bad_specs_are_clear_errors(purchases):
    with pytest.raises(PatronError, match="neither a model name"):
        compare(purchases, "popularity,nosuchmodel", n_boot=10)
    with pytest.raises(PatronError, match="--reference"):
        compare(purchases, "popularity", reference="als", n_boot=10)
    with pytest.raises(PatronError, match="listed twice"):
        compare(purchases, "als,als", n_boot=10)


def test_cli_compare_writes_table_and_report(purchases, tmp_path, capsys):
    from patron.cli import main

    data = tmp_path / "purchases.parquet"
    purchases.to_parquet(data)
    rc = main(["compare", "--data", str(data), "--models", "popularity,repeat_buy",
               "--n-boot", "100", "--report", str(tmp_path / "rep"), "--json", str(tmp_path / "c.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mode repeat" in out and "repeat_buy" in out
    assert (tmp_path / "rep" / "differences.png").stat().st_size > 1000
    assert (tmp_path / "c.json").is_file()
