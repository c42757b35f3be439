"""Train one model from clean purchases and build its full artifact.

``flat params`` (what Optuna suggests, MLflow logs and ``patron train --params`` takes)
hold the model's config fields plus interaction-matrix settings, the latter as
``matrix.<field>`` of :class:`features.matrix.MatrixConfig` (an unprefixed key that is a
MatrixConfig field and not a field of the model's config, e.g. ``weighting`` or
``half_life_days``, is taken as a matrix setting too).

The artifact of a trained model carries, beside the model arrays: the item table
(:func:`features.item_features.item_table`), the cross-sell arrays
(:func:`features.cooccurrence.cross_sell_arrays`: ``xsell_lift``, ``xsell_confidence``,
``item_baskets``; ``n_baskets`` in params and metadata), the customer analytics as of the end
of the training period (:func:`customer_tables`: artifact tables ``customers``, ``reminders``
and ``favourites``; ``customer_tables`` in metadata) and metadata (data and split description,
matrix settings, fit seconds, test metrics).

:class:`Holdout` scores a model or raw factor arrays on a held-out period fast (one
mode, one metric): it is what tuning calls every few epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import columns as C
from features.artifact import ModelArtifact
from features.errors import PatronError
from features.interactions import InteractionMatrix
from features.scoring import score, top_k
from training.metrics import ACCURACY, per_user_metrics
from training.models.base import Recommender, TrainingOptions

log = logging.getLogger(__name__)

MATRIX_PREFIX = "matrix."
MODES = ("new", "repeat")

__all__ = [
    "MODES", "TrainResult", "Holdout", "parse_metric", "split_params", "make_model",
    "build_matrix", "fit_model", "attach_extras", "customer_tables", "train_model", "data_description",
    "split_id", "evaluate_test", "load_purchases",
]


def parse_metric(metric: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; names from :data:`training.metrics.ACCURACY`."""
    name, _, k = metric.partition("@")
    name = name.strip().lower()
    if name not in ACCURACY:
        raise PatronError(f"unknown metric {metric!r}; use one of {list(ACCURACY)} with @K, e.g. ndcg@10")
    try:
        kk = int(k) if k else 10
    except ValueError:
        raise PatronError(f"metric {metric!r}: K after '@' must be a whole number") from None
    if kk <= 0:
        raise PatronError(f"metric {metric!r}: K must be positive")
    return name, kk


def split_params(model: str, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Flat params -> ``(MatrixConfig, model config dict)``; unknown keys are refused."""
    from features.matrix import MatrixConfig
    from training.models.registry import get_model

    cls = get_model(model)
    model_fields = set(cls.Config.model_fields)
    matrix_fields = set(MatrixConfig.model_fields)
    mparams: dict[str, Any] = {}
    cparams: dict[str, Any] = {}
    for key, value in params.items():
        if key.startswith(MATRIX_PREFIX):
            mparams[key[len(MATRIX_PREFIX):]] = value
        elif key in model_fields:
            cparams[key] = value
        elif key in matrix_fields:
            mparams[key] = value
        elif key == "decay":  # search-space switch, carried by half_life_days
            continue
        else:
            raise PatronError(
                f"unknown parameter {key!r} for model {model!r}; model fields: "
                f"{sorted(model_fields)}; matrix fields (matrix.<name>): {sorted(matrix_fields)}"
            )
    mparams.pop("decay", None)
    try:
        mconfig = MatrixConfig(**mparams)
        cls.Config(**cparams)
    except Exception as exc:  # pydantic.ValidationError
        raise PatronError(f"invalid parameters for {model!r}: {_one_line(exc)}") from exc
    return mconfig, cparams


def _jsonable(obj: Any) -> Any:
    """A JSON round trip (timestamps and numpy scalars become plain values)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]


def make_model(model: str, config: dict[str, Any], options: TrainingOptions | None = None) -> Recommender:
    from training.models.registry import get_model

    return get_model(model)(config, options or TrainingOptions())


def build_matrix(purchases: pd.DataFrame, mconfig, customers=None, items=None) -> InteractionMatrix:
    from features.matrix import build_interactions

    return build_interactions(purchases, mconfig, customers=customers, items=items)


def fit_model(
    purchases: pd.DataFrame,
    model: str,
    params: dict[str, Any] | None = None,
    options: TrainingOptions | None = None,
    callback=None,
    matrix: InteractionMatrix | None = None,
) -> tuple[Recommender, InteractionMatrix, float]:
    """Build the matrix (unless given) and fit; returns ``(model, matrix, fit_seconds)``."""
    mconfig, cparams = split_params(model, params or {})
    if matrix is None:
        matrix = build_matrix(purchases, mconfig)
    rec = make_model(model, cparams, options)
    t0 = time.perf_counter()
    if getattr(rec, "needs_purchases", False):
        rec.fit(matrix, callback, purchases=purchases)
    else:
        rec.fit(matrix, callback)
    return rec, matrix, time.perf_counter() - t0


REMINDERS_KEPT = 20  # best reminders kept per customer in the artifact
FAVOURITES_KEPT = 20  # own favourite items kept per half-asleep / sleeping customer
WINBACK_STAGES = ("S2", "S3")


def customer_tables(purchases: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], dict]:
    """The artifact tables of the customer analytics and their metadata, as of the day after
    the last purchase in ``purchases`` (the training period's end).

    ``customers`` (RFM, segments, NES stage; one row per customer), ``reminders`` (the best
    :data:`REMINDERS_KEPT` items due per customer) and ``favourites`` (customer_id, item_id,
    offer_rank: the :data:`FAVOURITES_KEPT` items with most purchase days, then spend, of each
    customer in :data:`WINBACK_STAGES`, which serving leads their list with). Data the
    analytics cannot use (a PatronError) give no tables and a ``skipped`` reason.
    """
    from features.customers import CustomerDataWarning, build_customer_tables, prepare
    from features.customers.nes import NES_STAGE
    from features.customers.reminders import REMINDER_RANK
    from features.customers.winback import favourite_items

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CustomerDataWarning)  # kept in tables.notes
            tables = build_customer_tables(purchases)
            lines, _ = prepare(purchases, tables.reference_date, warn=False)
    except PatronError as exc:
        log.warning("customer tables skipped: %s", exc)
        return {}, {"skipped": str(exc)}
    customers = tables.customers
    reminders = tables.reminders
    if REMINDER_RANK in reminders.columns:
        reminders = reminders[reminders[REMINDER_RANK] <= REMINDERS_KEPT]
    sleeping = customers.loc[customers[NES_STAGE].isin(WINBACK_STAGES), C.CUSTOMER_ID]
    favourites = favourite_items(lines, pd.Index(sleeping), FAVOURITES_KEPT)
    favourites = favourites.drop(columns="source", errors="ignore")
    out = {
        "customers": customers.reset_index(drop=True),
        "reminders": reminders.reset_index(drop=True),
        "favourites": favourites.reset_index(drop=True),
    }
    meta = {
        "reference_date": str(tables.reference_date.date()),
        "shop_cycle_days": float(tables.shop_cycle_days),
        "rows": {k: int(len(v)) for k, v in out.items()},
        "reminders_kept_per_customer": REMINDERS_KEPT,
        "winback_stages": list(WINBACK_STAGES),
        "notes": list(tables.notes),
    }
    return out, meta


def attach_extras(art: ModelArtifact, purchases: pd.DataFrame, metadata: dict | None = None) -> ModelArtifact:
    """Add the item table, cross-sell arrays, customer tables and metadata to a fit model's
    artifact."""
    from features.cooccurrence import cross_sell_arrays
    from features.item_features import item_table

    art.weighting = _jsonable(art.weighting)
    art.item_table = item_table(purchases, items=art.items)
    xs = dict(cross_sell_arrays(purchases, art.items))
    n_baskets = xs.pop("n_baskets", None)
    for name, arr in xs.items():
        art.arrays[name] = arr
    if n_baskets is not None:
        art.params["n_baskets"] = int(n_baskets)
        art.metadata["n_baskets"] = int(n_baskets)
    tables, tmeta = customer_tables(purchases)
    art.tables.update(tables)
    art.metadata["customer_tables"] = _jsonable(tmeta)
    art.metadata.update(metadata or {})
    return art


def load_purchases(spec: str) -> pd.DataFrame:
    """Clean purchases from ``completejourney``, ``online_retail`` or a path (see
    :func:`features.ingest.load_dataset`)."""
    from features.ingest import load_dataset

    return load_dataset(spec)


def data_description(purchases: pd.DataFrame, source: str | None = None) -> dict:
    """Size, span and a content fingerprint of a purchase log."""
    ts = purchases[C.TIMESTAMP]
    keys = purchases[[C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP]]
    digest = hashlib.sha1(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes())
    return {
        "source": source,
        "rows": int(len(purchases)),
        "customers": int(purchases[C.CUSTOMER_ID].nunique()),
        "items": int(purchases[C.ITEM_ID].nunique()),
        "span": [str(ts.min()), str(ts.max())],
        "fingerprint": digest.hexdigest()[:16],
    }


def split_id(data_desc: dict, split_desc: dict) -> str:
    """A short id of (data, split): two models are comparable when their ids are equal."""
    key = {"data": data_desc.get("fingerprint"), "cutoff": split_desc.get("cutoff"),
           "kind": split_desc.get("kind"), "test_rows": split_desc.get("test_rows")}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


class Holdout:
    """A held-out period mapped onto a training matrix, scored in one mode.

    ``new``: relevant = items bought in the period and never in training, already bought
    items are filtered from the lists; ``repeat``: relevant = every distinct item bought
    in the period, nothing filtered. Customers unknown to training, items unknown to
    training, and customers with nothing relevant are left out (counted in ``info``).
    ``max_customers`` samples customers (seeded) to keep per-epoch scoring cheap.
    """

    def __init__(self, train: InteractionMatrix, period: pd.DataFrame, mode: str = "new",
                 k: int = 10, max_customers: int | None = None, seed: int = 0):
        from training.evaluate import build_test_set

        if mode not in MODES:
            raise PatronError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode, self.k = mode, int(k)
        ts = build_test_set(train, period, (mode,))
        rel = ts.relevant[mode]
        keep = np.flatnonzero(np.diff(rel.indptr) > 0)
        if max_customers is not None and len(keep) > max_customers:
            keep = np.sort(np.random.default_rng(seed).choice(keep, max_customers, replace=False))
        self.users = ts.rows[keep]
        self.relevant = rel[keep]
        self.n_relevant = np.diff(self.relevant.indptr)
        self.exclude = train.matrix[self.users] if mode == "new" else None
        self.info = {"mode": mode, "k": self.k, "customers": int(len(self.users)), **ts.stats}

    def __len__(self) -> int:
        return len(self.users)

    def recommend(self, art: ModelArtifact, batch: int = 512) -> np.ndarray:
        """``len(self) x k`` recommended item indices."""
        out = []
        for lo in range(0, len(self.users), batch):
            r = self.users[lo:lo + batch]
            s = score(art, r)
            ex = None if self.exclude is None else self.exclude[lo:lo + batch]
            out.append(top_k(s, self.k, exclude=ex)[0])
        return np.vstack(out) if out else np.empty((0, self.k), np.int64)

    def per_user(self, art: ModelArtifact) -> dict[str, np.ndarray]:
        from training.metrics import hit_matrix

        recs = self.recommend(art)
        return per_user_metrics(hit_matrix(recs, self.relevant), self.n_relevant, self.k)

    def score(self, art: ModelArtifact, metric: str = "ndcg") -> float:
        if len(self) == 0:
            return float("nan")
        return float(np.nanmean(self.per_user(art)[metric]))

    def score_arrays(self, model: Recommender, matrix: InteractionMatrix, arrays: dict,
                     metric: str = "ndcg") -> float:
        """Score in-training arrays (an epoch callback's) as if they were the model's."""
        params = {**model.config.model_dump()}
        if model.kind == "blend":
            params["cf_kind"] = "factors"
        art = ModelArtifact(kind=model.kind, model_name=model.name, customers=matrix.customers,
                            items=matrix.items, arrays=dict(arrays), history=matrix.matrix,
                            params=params)
        return self.score(art, metric)


def evaluate_test(model: Recommender, matrix: InteractionMatrix, test: pd.DataFrame,
                  ks: tuple[int, ...] = (10,)) -> pd.DataFrame:
    """Test metrics in both modes as a tidy frame (model, mode, metric, k, value, customers).

    Uses :func:`training.evaluate.evaluate` (the same numbers as ``patron evaluate``).
    """
    from training.evaluate import evaluate

    return evaluate(model, matrix, test, k=tuple(ks), modes=MODES).metrics


@dataclass
class TrainResult:
    """A fit model with its matrix, test metrics and provenance."""

    model: Recommender
    matrix: InteractionMatrix
    params: dict[str, Any]
    fit_seconds: float
    metrics: pd.DataFrame | None = None
    metadata: dict = field(default_factory=dict)

    def metric(self, name: str, k: int, mode: str) -> float | None:
        if self.metrics is None:
            return None
        m = self.metrics
        hit = m[(m["metric"] == name) & (m["k"] == k) & (m["mode"] == mode)]
        return float(hit["value"].iloc[0]) if len(hit) else None

    def flat_metrics(self, prefix: str = "test") -> dict[str, float]:
        """``{"test.new.ndcg_at_10": value, ...}`` for MLflow."""
        from training.tracking import metric_key

        if self.metrics is None:
            return {}
        out = {}
        for row in self.metrics.itertuples(index=False):
            if pd.notna(row.value):
                out[metric_key(f"{row.metric}@{row.k}", row.mode, prefix)] = float(row.value)
        return out


def train_model(
    train: pd.DataFrame,
    model: str,
    params: dict[str, Any] | None = None,
    test: pd.DataFrame | None = None,
    ks: tuple[int, ...] = (10,),
    options: TrainingOptions | None = None,
    metadata: dict | None = None,
    extras: bool = True,
) -> TrainResult:
    """Fit ``model`` on ``train`` and, given ``test``, score it in both modes; the
    artifact gets the item table, cross-sell arrays and metadata (``extras``)."""
    params = dict(params or {})
    rec, matrix, secs = fit_model(train, model, params, options)
    metrics = evaluate_test(rec, matrix, test, ks) if test is not None else None
    result = TrainResult(rec, matrix, params, secs, metrics, dict(metadata or {}))
    meta = {
        **result.metadata,
        "flat_params": params,
        "matrix": dict(matrix.weighting),
        "fit_seconds": round(secs, 3),
        "metrics": result.flat_metrics(),
    }
    meta = _jsonable(meta)
    if extras:
        attach_extras(rec.fitted, train, meta)
    else:
        rec.fitted.metadata.update(meta)
    result.metadata = rec.fitted.metadata
    return result
