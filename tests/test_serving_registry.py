"""Serving loads a model from the MLflow registry by alias (models:/NAME@champion)."""

from __future__ import annotations

import pytest

from serving.loader import ModelLoadError, load_engine
from serving.state import ServingState, Settings
from tests.serving_helpers import build_artifact


@pytest.mark.slow
def test_load_by_alias_and_reload_follows_the_alias(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from training.registry import log_patron_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("serving-test")
    build_artifact(tmp_path / "a", seed=1)
    build_artifact(tmp_path / "b", seed=2, factors=8)
    client = MlflowClient(uri)
    for path in ("a", "b"):
        with mlflow.start_run():
            _, mv = log_patron_model(tmp_path / path, "shop")
    client.set_registered_model_alias("shop", "champion", "1")

    state = ServingState(Settings(model_uri="models:/shop@champion", cache_dir=str(tmp_path)))
    ok, failed = state.load()
    assert not failed and state.ready
    info = state.info(admin=True)["models"][0]
    assert info["version"] == "shop/1" and info["alias"] == "champion"
    assert info["registry_version"] == "1" and info["run_id"]
    first = state.engines["models:/shop@champion"]

    client.set_registered_model_alias("shop", "champion", mv.version)  # promote v2
    ok, failed = state.load()
    assert not failed and ok[0]["version"] == "shop/2"
    assert state.engines["models:/shop@champion"] is not first

    with pytest.raises(ModelLoadError, match="models:/shop@nope"):
        load_engine("models:/shop@nope")
