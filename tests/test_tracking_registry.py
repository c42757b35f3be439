"""MLflow records of a tuning session, the pyfunc model, the champion guard.

One real MLflow SQLite store (and Optuna storage) in a tmp dir, shared by the tests of
this module in order: tune + register (v1, champion) -> train a weak model (v2, refused)
-> promote --force -> challenger. Tiny synthetic data.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from features.errors import PatronError
from features.synthetic import generate_purchases
from training.tracking import client
from training.tune import TuneSettings, tune


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("registry")
    from features.ingest import write_purchases

    purchases = generate_purchases(n_customers=200, n_items=80, n_days=150, seed=2).purchases
    path = write_purchases(purchases, d / "purchases.parquet")
    return {"dir": d, "purchases": purchases, "path": str(path),
            "storage": f"sqlite:///{d / 'optuna.db'}", "uri": f"sqlite:///{d / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def tuned(env):
    s = TuneSettings(models=("itemknn",), n_trials=2, storage=env["storage"], holdout_days=21,
                     validation_days=21, progress=False, min_customers=5, study="reg",
                     baselines=("popularity",))
    return tune(env["purchases"], s, tracking_uri=env["uri"], register="patron",
                source=env["path"])


def test_parent_and_nested_runs_with_artifacts(env, tuned):
    c = client(env["uri"])
    parent = c.get_run(tuned.parent_run_id)
    assert parent.data.tags["patron.kind"] == "tune"
    assert parent.data.params["metric"] == "ndcg@10"
    assert "test.new.ndcg_at_10" in parent.data.metrics
    children = c.search_runs([parent.info.experiment_id],
                             f"tags.mlflow.parentRunId = '{tuned.parent_run_id}'")
    trials = [r for r in children if "optuna.trial" in r.data.tags]
    refits = [r for r in children if r.data.tags.get("patron.kind") == "refit"]
    assert len(trials) == 2 and len(refits) == 1
    for r in trials:
        assert r.info.status == "FINISHED" and r.data.tags["optuna.state"] == "COMPLETE"
        assert "similarity" in r.data.params and "neighbours" in r.data.params
        assert "val.ndcg_at_10.final" in r.data.metrics and "duration_seconds" in r.data.metrics
    assert "test.repeat.ndcg_at_10" in refits[0].data.metrics
    names = {a.path for a in c.list_artifacts(tuned.parent_run_id)}
    assert {"description.json", "metrics.csv", "metrics.md",
            "reg.itemknn.history.png", "reg.itemknn.importances.png"} <= names
    desc = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=tuned.parent_run_id, artifact_path="description.json")).read_text())
    assert desc["split"]["holdout_days"] == 21 and desc["validation"]["kind"] == "validation"
    table = tuned.table
    assert set(table["model"]) == {"itemknn", "popularity"}
    assert set(table["mode"]) == {"new", "repeat"}


def test_pyfunc_champion_loads_and_predicts(env, tuned):
    assert tuned.registered == ("patron", "1")
    assert tuned.promotion.decision == "first"
    mlflow.set_tracking_uri(env["uri"])
    mlflow.set_registry_uri(env["uri"])
    model = mlflow.pyfunc.load_model("models:/patron@champion")
    customers = env["purchases"]["customer_id"].unique()[:3]
    inp = pd.DataFrame({"customer_id": list(customers) + [999_999], "n": [5, 5, 3, 4]})
    out = model.predict(inp)
    assert list(out.columns) == ["customer_id", "item_id", "rank", "score"]
    counts = out.groupby("customer_id").size()
    assert counts[customers[0]] == 5 and counts[customers[2]] == 3
    assert counts[999_999] == 4  # unknown customer: popularity fallback
    assert (out.groupby("customer_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1)))).all()
    # already bought items are excluded by default
    bought = set(env["purchases"].loc[env["purchases"]["customer_id"] == customers[0], "item_id"])
    recs = set(out.loc[out["customer_id"] == customers[0], "item_id"])
    split_train = env["purchases"][env["purchases"]["timestamp"] < pd.Timestamp(
        tuned.description["split"]["cutoff"])]
    bought = set(split_train.loc[split_train["customer_id"] == customers[0], "item_id"])
    assert not recs & bought
    # the Patron artifact sits at artifacts/patron_model/ inside the logged model
    local = Path(mlflow.artifacts.download_artifacts("models:/patron@champion"))
    assert (local / "artifacts" / "patron_model" / "manifest.json").is_file()


def test_worse_candidate_not_promoted_then_force_and_challenger(env, tuned, capsys):
    from patron.cli import main

    c = client(env["uri"])
    rc = main(["train", "--data", env["path"], "--model", "popularity", "--holdout-days", "21",
               "--out", str(env["dir"] / "pop"), "--register", "patron",
               "--tracking-uri", env["uri"]])
    out = capsys.readouterr().out
    assert rc == 0 and "registered patron version 2" in out and "promotion: rejected" in out
    assert str(c.get_model_version_by_alias("patron", "champion").version) == "1"
    tags = c.get_model_version("patron", "2").tags
    assert tags["patron.promote.decision"] == "rejected"
    assert tags["patron.promote.champion_version"] == "1"
    assert float(tags["patron.promote.candidate_value"]) < float(tags["patron.promote.champion_value"])
    assert tags["patron.split_id"] == c.get_model_version("patron", "1").tags["patron.split_id"]

    rc = main(["promote", "--name", "patron", "--version", "2", "--tracking-uri", env["uri"]])
    assert rc == 1 and "NOT promoted" in capsys.readouterr().out
    assert str(c.get_model_version_by_alias("patron", "champion").version) == "1"

    rc = main(["promote", "--name", "patron", "--version", "2", "--challenger",
               "--tracking-uri", env["uri"]])
    assert rc == 0
    assert str(c.get_model_version_by_alias("patron", "challenger").version) == "2"
    assert str(c.get_model_version_by_alias("patron", "champion").version) == "1"

    rc = main(["promote", "--name", "patron", "--version", "2", "--force",
               "--tracking-uri", env["uri"]])
    assert rc == 0 and "forced" in capsys.readouterr().out
    assert str(c.get_model_version_by_alias("patron", "champion").version) == "2"
    assert c.get_model_version("patron", "2").tags["patron.promote.decision"] == "forced"


def test_failures_leave_registry_untouched(env, tuned, capsys):
    from patron.cli import main
    from training.registry import log_patron_model, promote

    c = client(env["uri"])
    before = str(c.get_model_version_by_alias("patron", "champion").version)
    n_versions = len(c.search_model_versions("name='patron'"))
    rc = main(["tune", "--data", env["path"], "--storage", "postgresql://u:pw@127.0.0.1:1/x",
               "--tracking-uri", env["uri"], "--register", "patron", "--trials", "1"])
    assert rc == 2
    with pytest.raises(PatronError, match="has no version 99"):
        promote("patron", 99, tracking_uri=env["uri"])
    with pytest.raises(PatronError, match="no registered model named 'nobody'"):
        promote("nobody", 1, tracking_uri=env["uri"])
    # an artifact of another format version is refused before anything is logged
    art_dir = env["dir"] / "pop"
    manifest = json.loads((art_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    bad = env["dir"] / "bad"
    import shutil

    shutil.copytree(art_dir, bad)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    mlflow.set_tracking_uri(env["uri"])
    with mlflow.start_run():
        with pytest.raises(PatronError, match="format_version 99 is not supported"):
            log_patron_model(bad, "patron")
    assert str(c.get_model_version_by_alias("patron", "champion").version) == before
    assert len(c.search_model_versions("name='patron'")) == n_versions
