"""Tuning: search spaces, params splitting, study resume, pruning, bad input.

Real Optuna SQLite storages and real MLflow SQLite stores in tmp dirs; tiny synthetic data.
"""

from __future__ import annotations

import json

import optuna
import pytest

from features.errors import PatronError
from features.synthetic import generate_purchases
from training.pipeline import Holdout, parse_metric, split_params, train_model
from training.spaces import SPACES, suggest
from training.tune import StorageError, TuneSettings, open_storage, tune


@pytest.fixture(scope="module")
def purchases():
    return generate_purchases(n_customers=200, n_items=80, n_days=150, seed=1).purchases


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    return {"storage": f"sqlite:///{d / 'optuna.db'}", "tracking": f"sqlite:///{d / 'mlflow.db'}"}


def _settings(stores, **kw) -> TuneSettings:
    base = dict(models=("als",), n_trials=2, storage=stores["storage"], holdout_days=21,
                validation_days=21, baselines=(), refit=False, progress=False, eval_every=2,
                fixed={"als": {"iterations": 4, "factors": 8}}, min_customers=5)
    base.update(kw)
    return TuneSettings(**base)


@pytest.mark.parametrize("model", sorted(SPACES))
def test_every_space_gives_valid_params(model):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = suggest(model, study.ask())
        mconfig, cparams = split_params(model, params)
        assert all(isinstance(v, int | float | str | type(None)) for v in params.values())
        assert json.loads(json.dumps(params)) == params
        if "matrix.half_life_days" in params:
            assert mconfig.half_life_days == params["matrix.half_life_days"]


def test_split_params_prefix_and_unknown():
    mconfig, cparams = split_params("itemknn", {"bm25_k1": 2.0, "matrix.bm25_k1": 0.9,
                                                "weighting": "binary"})
    assert cparams == {"bm25_k1": 2.0}  # model field wins unprefixed
    assert mconfig.bm25_k1 == 0.9 and mconfig.weighting == "binary"
    with pytest.raises(PatronError, match="unknown parameter 'nope'"):
        split_params("als", {"nope": 1})
    with pytest.raises(PatronError, match="invalid parameters"):
        split_params("als", {"factors": -3})
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    with pytest.raises(PatronError, match="unknown metric"):
        parse_metric("auc@10")


def test_train_model_artifact_carries_extras(purchases, tmp_path):
    from features.artifact import load_artifact
    from training.split import split_global_time

    split = split_global_time(purchases, holdout_days=21)
    res = train_model(split.train, "als", {"factors": 8, "iterations": 3,
                                           "matrix.weighting": "binary"}, split.test)
    assert res.metric("ndcg", 10, "new") is not None
    res.model.save(tmp_path / "m")
    art = load_artifact(tmp_path / "m")
    for name in ("xsell_lift", "xsell_confidence", "item_baskets", "user_factors"):
        assert name in art.arrays
    assert art.item_table is not None and set(art.item_table["item_id"]) <= set(art.items.ids)
    assert art.metadata["flat_params"]["factors"] == 8
    assert "test.new.ndcg_at_10" in art.metadata["metrics"]
    assert art.params["n_baskets"] > 0


def test_holdout_uses_validation_only(purchases):
    """The validation period lies inside training: nothing after the test cutoff."""
    from training.pipeline import build_matrix
    from training.split import split_global_time, split_validation

    split = split_global_time(purchases, holdout_days=21)
    val = split_validation(split.train, 21)
    assert val.test["timestamp"].max() < split.test["timestamp"].min()
    mconfig, _ = split_params("als", {})
    m = build_matrix(val.train, mconfig)
    h = Holdout(m, val.test, "new", 10)
    assert len(h) > 0 and h.exclude is not None
    assert h.relevant.multiply(h.exclude).nnz == 0  # new mode: nothing relevant already bought


def test_resume_study_adds_trials(purchases, stores):
    s = _settings(stores, study="resume")
    tune(purchases, s, tracking_uri=stores["tracking"])
    tune(purchases, s, tracking_uri=stores["tracking"])
    study = optuna.load_study(study_name="resume.als", storage=stores["storage"])
    assert len(study.trials) == 4
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    # the resumed run did not replay the first run's configurations
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 4


def test_pruned_trials_recorded_in_optuna_and_mlflow(purchases, stores):
    from training.tracking import client

    s = _settings(stores, study="prune",
                  pruner=optuna.pruners.ThresholdPruner(lower=1.0))  # every report prunes
    r = tune(purchases, s, tracking_uri=stores["tracking"])
    study = optuna.load_study(study_name="prune.als", storage=stores["storage"])
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all(t.intermediate_values for t in study.trials)
    c = client(stores["tracking"])
    parent = c.get_run(r.parent_run_id)
    runs = c.search_runs([parent.info.experiment_id],
                         f"tags.mlflow.parentRunId = '{r.parent_run_id}'")
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "KILLED"
        assert run.data.tags["optuna.state"] == "PRUNED"
        hist = c.get_metric_history(run.info.run_id, "val.ndcg_at_10")
        assert [m.step for m in hist] == [2]  # reported at epoch 2, pruned there
        assert run.data.params["factors"] == "8"  # the pinned value, as used
    assert r.best is None and r.registered is None


def test_unreachable_storage_is_one_line():
    with pytest.raises(StorageError) as e:
        open_storage("postgresql://user:secret@127.0.0.1:1/optuna")
    msg = str(e.value)
    assert "cannot reach Optuna storage" in msg and "secret" not in msg and "\n" not in msg
    with pytest.raises(StorageError, match="does not exist"):
        open_storage("sqlite:////nonexistent-dir-xyz/optuna.db")


def test_study_that_minimises_is_refused(stores):
    from training.tune import open_study

    optuna.create_study(study_name="mini.als", storage=stores["storage"], direction="minimize")
    with pytest.raises(StorageError, match="exists but minimises"):
        open_study(open_storage(stores["storage"]), "mini.als", TuneSettings())


def test_unreachable_tracking_uri_is_one_line():
    from training.tracking import TrackingError, check_tracking_uri

    with pytest.raises(TrackingError, match="cannot reach MLflow tracking server"):
        check_tracking_uri("http://127.0.0.1:1", timeout=2)


def test_too_few_customers_and_empty_validation(stores):
    small = generate_purchases(n_customers=4, n_items=40, n_days=60, seed=3).purchases
    with pytest.raises(PatronError, match="too few customers"):
        tune(small, _settings(stores, study="small", min_customers=10),
             tracking_uri=stores["tracking"])
    data = generate_purchases(n_customers=50, n_items=40, n_days=60, seed=3).purchases
    with pytest.raises(PatronError, match="training period would be empty|empty"):
        tune(data, _settings(stores, study="empty", holdout_days=21, validation_days=60),
             tracking_uri=stores["tracking"])


def test_cli_bad_input_exit_2(capsys, tmp_path, purchases):
    from features.ingest import write_purchases
    from patron.cli import main

    path = write_purchases(purchases, tmp_path / "purchases.parquet")
    rc = main(["tune", "--data", str(path), "--storage", "postgresql://u:pw@127.0.0.1:1/x",
               "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--trials", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("patron tune: error: cannot reach Optuna storage")
    assert len(err.splitlines()) == 1
    rc = main(["train", "--data", str(path), "--model", "als", "--params", '{"factorz": 3}'])
    assert rc == 2 and "unknown parameter 'factorz'" in capsys.readouterr().err
