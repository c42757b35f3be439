"""Spark MLlib ALS as a second training engine (``patron train --engine spark``).

Fits ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` on the COO triplets of the
same :class:`~features.interactions.InteractionMatrix` the implicit engine uses (so the
weighting is identical by construction) and exports the factors as an ordinary ``factors``
artifact with the same id maps: evaluation, registry and serving do not know which engine
trained it. pyspark is an optional extra (``pip install -e '.[spark]'``) and needs Java 17;
it is imported lazily, so importing this module (and the model registry) does not need it.

Same model, two parametrisations. Both engines minimise Hu, Koren & Volinsky's loss
``sum_ui c_ui (p_ui - x_u.y_i)^2 + penalty``, solving for each customer
``(YtY + sum_i (c_ui - 1) y_i y_i^T + lambda_u I) x_u = sum_i c_ui y_i`` (items alike):

* implicit 0.7: ``c = alpha * r`` (r = matrix value), ``lambda_u = regularization``.
* Spark: ``c = 1 + alpha_s * r_s`` for the rating ``r_s`` it is given, preference 1 only
  where ``r_s > 0``, and ``lambda_u = regParam * n_u`` (ALS-WR: n_u = the customer's
  number of positive ratings; n_i for items).

The mapping used here (config fields are in implicit's units, so one config means the
same model on both engines):

* confidence: Spark gets ``alpha_s = alpha`` and ratings ``r_s = r - 1/alpha``, so
  ``1 + alpha * (r - 1/alpha) = alpha * r``: exactly implicit's confidence. Where
  ``alpha * r < 1`` (implicit would give an observed cell *less* weight than an
  unobserved one) ``r_s`` is clipped to a tiny positive value: confidence ~1, still a
  positive preference. With the default log1p weighting (r >= log 2) and alpha >= 1.45,
  or binary weighting and alpha >= 1, no cell is clipped.
* regularization: ``regParam = regularization / mean(n_u)`` (mean number of items per
  customer: nnz / customers with any purchase), so an average customer gets implicit's penalty; heavy
  buyers get more and light buyers less, and an item's penalty is ``regParam * n_i``.
  ``features.scoring.fold_in`` (params ``regularization``, ``alpha``) therefore folds in
  a customer exactly as Spark's customer step would for an average-size history.

Spark runs in local mode by default (``local[N]``, N = ``TrainingOptions.num_threads``);
``PATRON_SPARK_MASTER`` and ``PATRON_SPARK_DRIVER_MEMORY`` override master and driver
memory. One SparkSession is started per process (seconds) and reused by every fit. The
matrix reaches Spark as a temporary Parquet file and ALS checkpoints go to a temporary
directory, both under ``PATRON_SPARK_TMPDIR`` (default: the system temp dir); with a
cluster master, point it at storage every executor mounts.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from features.errors import PatronError
from features.interactions import InteractionMatrix
from training.models.base import FitCallback, ModelConfig, Recommender, TrainingOptions

log = logging.getLogger(__name__)

__all__ = [
    "SparkUnavailableError", "SparkALSConfig", "SparkALSRecommender", "spark_missing",
    "require_spark", "spark_session", "spark_ratings", "spark_reg_param", "fit_spark_als",
    "ENGINES", "engine_model",
]

# smallest Spark rating: confidence ~1 with a positive preference (see module docstring)
MIN_RATING = 1e-6
# ALS lineage grows with every iteration; without checkpoints the task graph overflows the
# JVM stack when it is serialised (seen at 15 iterations), so factors are checkpointed
CHECKPOINT_INTERVAL = 5
_SESSION_LOCK = threading.Lock()
_SESSION: Any = None


class SparkUnavailableError(PatronError):
    """pyspark or Java is missing, or the Spark JVM does not start."""


class SparkALSConfig(ModelConfig):
    """Spark ALS settings, in implicit's units (see the module docstring for the mapping)."""

    factors: int = Field(64, ge=1, le=1024, description="latent factors per customer and item (Spark rank)")
    regularization: float = Field(
        0.05, ge=0.0,
        description="L2 penalty of an average customer, as implicit's; Spark regParam = this / mean purchases per customer",
    )
    alpha: float = Field(2.0, gt=0.0, description="confidence = alpha * interaction value (as implicit)")
    iterations: int = Field(15, ge=1, le=500, description="ALS sweeps (Spark maxIter)")
    blocks: int = Field(0, ge=0, le=1000,
                        description="Spark user/item blocks (partitions); 0 = the default parallelism")


# -- availability ------------------------------------------------------------------------
def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home:
        exe = os.path.join(home, "bin", "java")
        return exe if os.access(exe, os.X_OK) else None
    return shutil.which("java")


def spark_missing() -> str | None:
    """Why the Spark engine cannot run here (pyspark or Java missing), or None."""
    try:
        importlib.import_module("pyspark")
    except ImportError:
        return "the Spark engine needs pyspark: install the extra with pip install -e '.[spark]'"
    if _java() is None:
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get("JAVA_HOME") \
            else "no java on PATH and JAVA_HOME is not set"
        return f"the Spark engine needs Java 17 ({where})"
    return None


def require_spark() -> None:
    """Raise :class:`SparkUnavailableError` (one line) unless pyspark and Java are there."""
    why = spark_missing()
    if why:
        raise SparkUnavailableError(why)


def spark_session(parallelism: int = 2):
    """The process's SparkSession, started on first use (``local[parallelism]``).

    Later calls reuse it whatever ``parallelism`` they ask for (a JVM per process).
    """
    global _SESSION
    require_spark()
    with _SESSION_LOCK:
        if _SESSION is not None and not _SESSION.sparkContext._jsc.sc().isStopped():
            return _SESSION
        from pyspark.sql import SparkSession

        n = max(1, int(parallelism))
        master = os.environ.get("PATRON_SPARK_MASTER", f"local[{n}]")
        t0 = time.perf_counter()
        try:
            _SESSION = (
                SparkSession.builder.appName("patron-als").master(master)
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.driver.memory", os.environ.get("PATRON_SPARK_DRIVER_MEMORY", "4g"))
                .config("spark.sql.shuffle.partitions", str(n))
                .config("spark.default.parallelism", str(n))
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.driver.host", "127.0.0.1")
                .getOrCreate()
            )
        except Exception as exc:  # PySparkRuntimeError (JAVA_GATEWAY_EXITED), Py4J errors
            msg = " ".join(str(exc).split())[:300]
            raise SparkUnavailableError(f"Spark did not start (master {master}): {msg}") from exc
        _SESSION.sparkContext.setLogLevel("ERROR")
        ckpt = tempfile.mkdtemp(prefix="patron-spark-checkpoints-", dir=_tmpdir())
        atexit.register(shutil.rmtree, ckpt, True)
        _SESSION.sparkContext.setCheckpointDir(ckpt)
        log.info("SparkSession %s started in %.1f s", master, time.perf_counter() - t0)
        return _SESSION


def _tmpdir() -> str | None:
    return os.environ.get("PATRON_SPARK_TMPDIR") or None


# -- the mapping -------------------------------------------------------------------------
def spark_ratings(values: np.ndarray, alpha: float) -> np.ndarray:
    """Spark ratings whose confidence ``1 + alpha * r_s`` equals implicit's ``alpha * r``."""
    return np.maximum(np.asarray(values, dtype=np.float64) - 1.0 / alpha, MIN_RATING)


def spark_reg_param(data: InteractionMatrix, regularization: float) -> float:
    """Spark regParam giving a customer with the mean purchase count implicit's penalty."""
    per_customer = data.matrix.nnz / max(1, np.count_nonzero(np.diff(data.matrix.indptr)))
    return float(regularization) / per_customer


# -- fitting -----------------------------------------------------------------------------
def fit_spark_als(
    data: InteractionMatrix, config: SparkALSConfig, options: TrainingOptions | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit Spark ALS on ``data``; ``(user_factors, item_factors, info)`` as float32
    arrays aligned with ``data``'s id maps (a customer or item Spark returns no factors
    for, i.e. one without positive cells, gets zeros). ``info``: Spark settings used and
    timings (``session_s``, ``load_s``, ``fit_s``)."""
    options = options or TrainingOptions()
    t0 = time.perf_counter()
    spark = spark_session(options.num_threads)
    session_s = time.perf_counter() - t0

    from pyspark.ml.recommendation import ALS

    t0 = time.perf_counter()
    coo = data.matrix.tocoo()
    frame = pd.DataFrame({
        "user": coo.row.astype(np.int32),
        "item": coo.col.astype(np.int32),
        "rating": spark_ratings(coo.data, config.alpha).astype(np.float32),
    })
    blocks = config.blocks or max(1, spark.sparkContext.defaultParallelism)
    reg_param = spark_reg_param(data, config.regularization)
    als = ALS(
        rank=config.factors, maxIter=config.iterations, regParam=reg_param, alpha=config.alpha,
        implicitPrefs=True, nonnegative=False, seed=int(options.seed),
        userCol="user", itemCol="item", ratingCol="rating", coldStartStrategy="drop",
        numUserBlocks=blocks, numItemBlocks=blocks, checkpointInterval=CHECKPOINT_INTERVAL,
    )
    # the triplets go to Spark as a Parquet file (Spark reads it natively: several times
    # faster than createDataFrame from pandas); the directory lives until the factors are out
    with tempfile.TemporaryDirectory(prefix="patron-spark-", dir=_tmpdir()) as tmp:
        path = os.path.join(tmp, "ratings.parquet")
        frame.to_parquet(path, index=False)
        ratings = spark.read.parquet(path)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = als.fit(ratings)
        try:
            users = model.userFactors.toPandas()
            items = model.itemFactors.toPandas()
        finally:
            _release_cached_rdds(spark)
    fit_s = time.perf_counter() - t0
    U = _dense_factors(users, data.n_customers, config.factors)
    Y = _dense_factors(items, data.n_items, config.factors)
    info = {"engine": "spark", "spark_master": spark.sparkContext.master,
            "spark_reg_param": reg_param, "spark_alpha": config.alpha, "spark_blocks": blocks,
            "session_s": round(session_s, 3), "load_s": round(load_s, 3), "fit_s": round(fit_s, 3)}
    return U, Y, info


def _release_cached_rdds(spark) -> None:
    """Free the factor RDDs ALS leaves cached (MEMORY_AND_DISK), so repeated fits in one
    process (tuning) do not pile them up in the driver."""
    for rdd in list(spark.sparkContext._jsc.getPersistentRDDs().values()):
        rdd.unpersist(False)


def _dense_factors(frame: pd.DataFrame, n: int, rank: int) -> np.ndarray:
    out = np.zeros((n, rank), dtype=np.float32)
    if len(frame):
        ids = frame["id"].to_numpy(dtype=np.int64)
        out[ids] = np.stack(frame["features"].to_numpy()).astype(np.float32)
    return out


class SparkALSRecommender(Recommender):
    """Implicit-feedback ALS fit by Spark MLlib; the artifact is the same as ``als``'s."""

    name = "spark_als"
    kind = "factors"
    Config = SparkALSConfig
    supports_epoch_callback = False  # Spark runs all iterations in one job
    artifact_params = {"fold_in": "als", "engine": "spark"}

    @classmethod
    def missing_dependency(cls) -> str | None:
        """Why this model cannot fit here (pyspark or Java missing), or None."""
        return spark_missing()

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        U, Y, info = fit_spark_als(data, self.config, self.options)
        self.fit_info = info
        return {
            "user_factors": U,
            "item_factors": Y,
            "_params": {"spark_reg_param": info["spark_reg_param"]},
        }


ENGINES = ("implicit", "spark")


def engine_model(model: str, engine: str) -> str:
    """The registered model that trains ``model`` on ``engine`` (``patron train --engine``).

    ``spark`` trains ALS only (``als`` or ``spark_als`` -> ``spark_als``) and is checked
    for pyspark and Java here, before any data is read or anything is written.
    """
    if engine not in ENGINES:
        raise PatronError(f"unknown engine {engine!r}; use one of {ENGINES}")
    if engine == "implicit":
        return model
    if model not in ("als", "spark_als"):
        raise PatronError(f"--engine spark trains ALS only, not {model!r}; use --model als")
    require_spark()
    return SparkALSRecommender.name
