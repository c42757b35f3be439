"""Spark ALS engine: the confidence/regularization mapping, agreement with implicit ALS,
the exported artifact, and clear errors without Java or pyspark.

Tests that start Spark share one local SparkSession per process (training.spark_als) and
are skipped, with the reason, where pyspark or Java is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from features.matrix import MatrixConfig, build_interactions
from features.scoring import fold_in
from features.synthetic import generate_purchases
from training.evaluate import evaluate
from training.models.als import ALSRecommender
from training.models.base import TrainingOptions
from training.models.registry import load_model
from training.spark_als import (
    MIN_RATING,
    SparkALSConfig,
    SparkALSRecommender,
    SparkUnavailableError,
    spark_missing,
    spark_ratings,
    spark_reg_param,
)
from training.split import split_global_time

ROOT = Path(__file__).resolve().parents[1]
WHY = spark_missing()
needs_spark = pytest.mark.skipif(WHY is not None, reason=f"Spark unavailable: {WHY}")


def spark_solve(Y: np.ndarray, cols: np.ndarray, r_s: np.ndarray, alpha_s: float, lam: float) -> np.ndarray:
    """One row of Spark's implicit normal equations (ALS.scala computeFactors)."""
    c1 = alpha_s * np.abs(r_s)
    A = Y.T @ Y + (Y[cols] * c1[:, None]).T @ Y[cols] + lam * np.eye(Y.shape[1])
    b = ((1.0 + c1) * (r_s > 0))[:, None] * Y[cols]
    return np.linalg.solve(A, b.sum(axis=0))


def implicit_solve(Y: np.ndarray, cols: np.ndarray, r: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """One row of implicit 0.7's normal equations (cpu/als.py user_linear_equation)."""
    c = alpha * r
    A = Y.T @ Y + reg * np.eye(Y.shape[1]) + (Y[cols] * (c - 1.0)[:, None]).T @ Y[cols]
    return np.linalg.solve(A, (c[:, None] * Y[cols]).sum(axis=0))


# -- the mapping (no Spark needed) -----------------------------------------------------------
def test_confidence_mapping_matches_implicit():
    r = np.log1p(np.array([1.0, 2.0, 5.0, 30.0]))
    for alpha in (1.5, 2.0, 10.0):
        r_s = spark_ratings(r, alpha)
        assert (r_s > 0).all()
        np.testing.assert_allclose(1.0 + alpha * r_s, alpha * r, rtol=1e-12)
    # implicit confidence < 1 cannot be a Spark positive: clipped to ~1 and still positive
    low = spark_ratings(np.array([0.2]), 2.0)
    assert low[0] == MIN_RATING


def test_normal_equations_agree_for_mean_customer():
    """With the mapping, Spark's solve for a customer with the mean number of purchases is
    implicit's solve (and so fold_in's) to rounding."""
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(40, 6))
    cols = rng.choice(40, size=8, replace=False)
    r = np.log1p(rng.integers(1, 6, size=8).astype(float))
    m = sp.csr_matrix((np.tile(r, 5), (np.repeat(np.arange(5), 8), np.tile(cols, 5))), shape=(5, 40))
    data = build_like(m)
    alpha, reg = 2.0, 0.3
    lam = spark_reg_param(data, reg) * len(cols)  # every customer has the mean count, 8
    np.testing.assert_allclose(lam, reg)
    x_spark = spark_solve(Y, cols, spark_ratings(r, alpha), alpha, lam)
    x_impl = implicit_solve(Y, cols, r, alpha, reg)
    np.testing.assert_allclose(x_spark, x_impl, rtol=1e-9, atol=1e-12)


def build_like(m: sp.csr_matrix):
    from features.idmap import IdMap
    from features.interactions import InteractionMatrix

    return InteractionMatrix(m.astype(np.float32), IdMap(np.arange(m.shape[0])), IdMap(np.arange(m.shape[1])))


def test_reg_param_is_per_mean_customer():
    m = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=np.float32))
    # 7 purchases over the 3 customers with any (the empty row does not count)
    assert spark_reg_param(build_like(m), 0.6) == pytest.approx(0.6 / (7 / 3))


def test_config_is_implicit_units_and_strict():
    cfg = SparkALSConfig()
    assert {k: cfg.model_dump()[k] for k in ("factors", "regularization", "alpha", "iterations")} == {
        k: v for k, v in ALSRecommender().config.model_dump().items()
        if k in ("factors", "regularization", "alpha", "iterations")}
    with pytest.raises(ValueError, match="use_cg"):
        SparkALSConfig(use_cg=True)


# -- with Spark ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    log = generate_purchases(n_customers=400, n_items=160, n_days=150, seed=11)
    split = split_global_time(log.purchases, holdout_days=28, min_customers=1)
    return build_interactions(split.train, MatrixConfig()), split.test


SETTINGS = {"factors": 16, "regularization": 0.5, "alpha": 2.0, "iterations": 8}


@pytest.fixture(scope="module")
def spark_model(sample):
    if WHY is not None:
        pytest.skip(f"Spark unavailable: {WHY}")
    matrix, _ = sample
    return SparkALSRecommender(SETTINGS, TrainingOptions(seed=3, num_threads=1)).fit(matrix)


@needs_spark
def test_spark_factors_solve_the_mapped_equations(spark_model, sample):
    """Spark's last step solved every customer against the final item factors; fold_in with
    that customer's Spark penalty (regParam * n_u) reproduces Spark's factors, so the
    ratings Spark was handed carry implicit's confidence alpha * r."""
    matrix, _ = sample
    art = spark_model.fitted
    U, Y = art.arrays["user_factors"], art.arrays["item_factors"]
    assert U.shape == (matrix.n_customers, 16) and Y.shape == (matrix.n_items, 16)
    reg_param = art.params["spark_reg_param"]
    assert reg_param == pytest.approx(spark_reg_param(matrix, SETTINGS["regularization"]))
    n_u = np.diff(matrix.matrix.indptr)
    for n in np.unique(n_u)[:6]:
        rows = np.flatnonzero(n_u == n)[:5]
        probe = type(art)(**{**art.__dict__, "params": {**art.params, "regularization": reg_param * n}})
        np.testing.assert_allclose(fold_in(probe, matrix.matrix[rows]), U[rows], rtol=2e-3, atol=2e-4)


@needs_spark
def test_spark_and_implicit_agree_on_ndcg(spark_model, sample):
    matrix, test = sample
    opts = TrainingOptions(seed=3, num_threads=1)
    implicit = ALSRecommender({**SETTINGS, "use_cg": False}, opts).fit(matrix)
    nd = {}
    for name, model in (("implicit", implicit), ("spark", spark_model)):
        m = evaluate(model, matrix, test, k=10, modes=("new",)).metrics
        nd[name] = float(m[(m["metric"] == "ndcg") & (m["k"] == 10)]["value"].iloc[0])
    pop = np.asarray(matrix.matrix.sum(axis=0)).ravel()
    assert nd["implicit"] > 0.05, nd
    assert abs(nd["spark"] - nd["implicit"]) <= 0.15 * nd["implicit"], (nd, pop.max())


@needs_spark
def test_spark_artifact_is_an_ordinary_factors_artifact(spark_model, sample, tmp_path):
    matrix, _ = sample
    spark_model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, SparkALSRecommender)
    art = loaded.fitted
    assert art.kind == "factors" and art.params["fold_in"] == "als" and art.params["engine"] == "spark"
    np.testing.assert_array_equal(art.customers.ids, matrix.customers.ids)
    np.testing.assert_array_equal(art.items.ids, matrix.items.ids)
    cust = matrix.customers.ids[:4]
    np.testing.assert_array_equal(loaded.recommend(cust, k=5)["item_id"], spark_model.recommend(cust, k=5)["item_id"])


# -- without Java / pyspark ------------------------------------------------------------------
def test_missing_java_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # no bin/java there
    assert "Java" in spark_missing()
    from tests.test_models_contract import DATA

    with pytest.raises(SparkUnavailableError, match="needs Java 17"):
        SparkALSRecommender(SETTINGS).fit(DATA)


def _cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patron.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *extra.pop("paths", [])])
    return {**env, **extra}


@pytest.mark.parametrize("missing", ["java", "pyspark"])
def test_train_engine_spark_without_dependency(missing, tmp_path):
    data = tmp_path / "purchases.parquet"
    generate_purchases(n_customers=60, n_items=40, n_days=60, seed=1).purchases.to_parquet(data)
    if missing == "java":
        env = _env(PATH=str(tmp_path))  # no java on PATH, JAVA_HOME unset
        what = "Java 17"
    else:
        fake = tmp_path / "shadow" / "pyspark"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('No module named pyspark')\n")
        env = _env(paths=[str(tmp_path / "shadow")])
        what = "pyspark"
    out = tmp_path / "model"
    proc = _cli(["train", "--data", str(data), "--engine", "spark", "--out", str(out)], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and what in lines[0] and lines[0].startswith("patron train: error:"), proc.stderr
    assert not out.exists()


@needs_spark
def test_train_engine_spark_end_to_end(tmp_path):
    """``patron train --engine spark`` writes a factors artifact that loads like any other."""
    data = tmp_path / "purchases.parquet"
    generate_purchases(n_customers=120, n_items=80, n_days=90, seed=2).purchases.to_parquet(data)
    out = tmp_path / "model"
    params = '{"factors": 8, "iterations": 3}'
    proc = _cli(["train", "--data", str(data), "--engine", "spark", "--params", params,
                 "--holdout-days", "14", "--out", str(out)], _env(), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "spark_als: fit in" in proc.stdout and "ndcg" in proc.stdout
    model = load_model(out)
    assert model.fitted.kind == "factors" and model.fitted.params["engine"] == "spark"
    assert model.fitted.item_table is not None and "xsell_lift" in model.fitted.arrays


def test_engine_routing():
    from features.errors import PatronError
    from training.pipeline import split_params
    from training.spark_als import engine_model

    assert engine_model("ease", "implicit") == "ease"
    with pytest.raises(PatronError, match="ALS only"):
        engine_model("ease", "spark")
    with pytest.raises(PatronError, match="unknown engine"):
        engine_model("als", "flink")
    if WHY is None:
        assert engine_model("als", "spark") == "spark_als"
    # implicit-only params are refused on the spark engine (before data is read)
    with pytest.raises(PatronError, match="use_cg"):
        split_params("spark_als", {"use_cg": True})
    assert split_params("spark_als", {"factors": 8, "matrix.weighting": "binary"})[1] == {"factors": 8}
