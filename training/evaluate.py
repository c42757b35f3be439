"""Offline evaluation of fit models on a held-out purchase period, in two modes.

* ``new``: relevant = items a customer bought in the test period but never in training;
  recommendations filter already-bought items. Measures discovery.
* ``repeat``: relevant = every distinct item the customer bought in the test period;
  nothing is filtered. Measures "what will they buy next", re-buys included.

Only test customers known in training are evaluated (the rest are counted as cold), and
only test items in the training catalogue can be relevant (the rest are counted as cold
items: no model can recommend them). Within a mode, customers with no relevant item are
left out of that mode's averages. Metrics are full-ranking over the whole catalogue (see
:mod:`training.metrics` for the definitions).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import columns as C
from features.errors import PatronError
from features.interactions import InteractionMatrix
from training.metrics import METRICS, ranking_metrics
from training.models.base import FitCallback, Recommender

MODES = ("new", "repeat")
MODE_TEXT = {
    "new": "relevant = test items never bought in train; already-bought items filtered",
    "repeat": "relevant = every distinct test item; nothing filtered",
}
_SCORE_CELLS = 1 << 22  # dense score cells per batch (~16 MB of float32)

__all__ = [
    "MODES",
    "EvaluationResult",
    "TestSet",
    "build_test_set",
    "evaluate",
    "evaluate_models",
    "fit_model",
    "format_table",
]


@dataclass(frozen=True)
class TestSet:
    """A test period mapped onto the training ids.

    ``rows``: training customer indices of the test customers known in training (sorted).
    ``relevant[mode]``: CSR ``len(rows) x n_items`` of relevant items per mode.
    ``stats``: counts of test lines, cold customers and cold items.
    """

    rows: np.ndarray
    relevant: dict[str, sp.csr_matrix]
    stats: dict


def build_test_set(
    train: InteractionMatrix, test_purchases: pd.DataFrame, modes: Sequence[str] = MODES
) -> TestSet:
    """Map ``test_purchases`` onto ``train``'s id maps and build each mode's relevant sets."""
    for col in (C.CUSTOMER_ID, C.ITEM_ID):
        if col not in test_purchases.columns:
            raise PatronError(f"test purchases lack column {col!r}")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise PatronError(f"unknown evaluation mode(s) {bad}; choose from {list(MODES)}")
    cust = train.customers.index_of(test_purchases[C.CUSTOMER_ID].to_numpy(), missing="ignore")
    item = train.items.index_of(test_purchases[C.ITEM_ID].to_numpy(), missing="ignore")
    known_c, known_i = cust >= 0, item >= 0
    rows = np.unique(cust[known_c])
    both = known_c & known_i
    pos = np.searchsorted(rows, cust[both])
    test_bin = sp.csr_matrix(
        (np.ones(int(both.sum()), dtype=np.float32), (pos, item[both])),
        shape=(len(rows), train.n_items),
    )
    test_bin.sum_duplicates()
    test_bin.data[:] = 1.0
    relevant: dict[str, sp.csr_matrix] = {}
    if "repeat" in modes:
        relevant["repeat"] = test_bin
    if "new" in modes:
        seen = train.matrix[rows]
        seen.data = (seen.data != 0).astype(np.float32)
        new = (test_bin - test_bin.multiply(seen)).tocsr()
        new.eliminate_zeros()
        relevant["new"] = new
    test_customers = pd.unique(test_purchases[C.CUSTOMER_ID])
    stats = {
        "test_rows": int(len(test_purchases)),
        "test_customers": int(len(test_customers)),
        "known_customers": int(len(rows)),
        "cold_customers": int(len(test_customers) - len(rows)),
        "cold_item_rows": int((known_c & ~known_i).sum()),
        "cold_items": int(test_purchases.loc[~known_i, C.ITEM_ID].nunique()),
    }
    return TestSet(rows=rows, relevant=relevant, stats=stats)


@dataclass
class EvaluationResult:
    """Tidy metrics (``model, mode, metric, k, value``), customers evaluated per mode,
    test-set statistics, per-model timings and (optionally) the recommendations
    (``model, mode, customer_id, item_id, rank, score``)."""

    metrics: pd.DataFrame
    n_customers: dict[str, int]
    stats: dict = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    recommendations: pd.DataFrame | None = None

    def value(self, model: str, mode: str, metric: str, k: int) -> float:
        """One metric value (KeyError if absent)."""
        m = self.metrics
        sel = m[(m["model"] == model) & (m["mode"] == mode) & (m["metric"] == metric) & (m["k"] == k)]
        if sel.empty:
            raise KeyError((model, mode, metric, k))
        return float(sel["value"].iloc[0])

    def to_dict(self) -> dict:
        """JSON-ready: metrics as records plus counts and timings."""
        recs = self.metrics.astype({"k": int}).to_dict(orient="records")
        for r in recs:
            if isinstance(r["value"], float) and not np.isfinite(r["value"]):
                r["value"] = None
        return {
            "n_customers": self.n_customers,
            "stats": self.stats,
            "timings": self.timings,
            "modes": {m: MODE_TEXT[m] for m in self.n_customers},
            "metrics": recs,
        }


def fit_model(
    model: Recommender,
    train: InteractionMatrix,
    purchases: pd.DataFrame | None = None,
    callback: FitCallback | None = None,
) -> Recommender:
    """Fit ``model``, passing the training ``purchases`` to models that need timestamps
    (class attribute ``needs_purchases``, e.g. ``recent_popularity``)."""
    if getattr(model, "needs_purchases", False):
        return model.fit(train, callback, purchases=purchases)
    return model.fit(train, callback)


def _ks(k: int | Sequence[int]) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int | np.integer) else tuple(k)
    if not ks or any(int(x) <= 0 for x in ks):
        raise PatronError(f"k must be one or more positive integers, got {k!r}")
    return tuple(sorted({int(x) for x in ks}))


def evaluate(
    model: Recommender,
    train: InteractionMatrix,
    test_purchases: pd.DataFrame | TestSet,
    k: int | Sequence[int] = (10,),
    modes: Sequence[str] = MODES,
    label: str | None = None,
    keep_recommendations: bool = False,
) -> EvaluationResult:
    """Evaluate a fit ``model`` (trained on ``train``) on ``test_purchases``.

    Recommends ``max(k)`` items per evaluated customer in batches through
    ``model.recommend_indices`` (already-bought filtered in ``new`` only) and computes
    every metric at every ``k``. ``test_purchases`` may be a prebuilt :class:`TestSet`.
    """
    art = model.fitted
    if (len(art.customers), len(art.items)) != train.shape:
        raise PatronError(
            f"model {model.name!r} was fit on {len(art.customers)} x {len(art.items)}, "
            f"but the training matrix is {train.shape[0]} x {train.shape[1]}"
        )
    ks = _ks(k)
    kmax = max(ks)
    label = label or model.name
    ts = test_purchases if isinstance(test_purchases, TestSet) else build_test_set(
        train, test_purchases, modes
    )
    pop = np.bincount(train.matrix.indices[train.matrix.data > 0], minlength=train.n_items)
    batch = int(max(16, min(2048, _SCORE_CELLS // max(train.n_items, 1))))
    rows_out, n_customers, frames = [], {}, []
    t0 = time.perf_counter()
    for mode in modes:
        if mode not in ts.relevant:
            raise PatronError(f"test set has no relevant sets for mode {mode!r}")
        rel = ts.relevant[mode]
        keep = np.diff(rel.indptr) > 0
        rows = ts.rows[keep]
        idx, vals = model.recommend_indices(
            rows, kmax, filter_already_bought=(mode == "new"), batch_size=batch
        )
        if idx.shape[1] < kmax:  # catalogue smaller than k: pad
            pad = kmax - idx.shape[1]
            idx = np.hstack([idx, np.full((len(rows), pad), -1, np.int64)])
            vals = np.hstack([vals, np.full((len(rows), pad), -np.inf, np.float32)])
        values, n = ranking_metrics(idx, rel[keep], ks, pop, train.n_customers)
        n_customers[mode] = n
        rows_out += [
            {"model": label, "mode": mode, "metric": m, "k": kk, "value": values[(m, kk)]}
            for kk in ks for m in METRICS
        ]
        if keep_recommendations:
            frames.append(_recs_frame(label, mode, train, rows, idx, vals))
    elapsed = time.perf_counter() - t0
    return EvaluationResult(
        metrics=pd.DataFrame(rows_out, columns=["model", "mode", "metric", "k", "value"]),
        n_customers=n_customers,
        stats=dict(ts.stats),
        timings={label: {"evaluate_s": round(elapsed, 3)}},
        recommendations=pd.concat(frames, ignore_index=True) if frames else None,
    )


def _recs_frame(label, mode, train, rows, idx, vals) -> pd.DataFrame:
    kk = idx.shape[1]
    valid = idx >= 0
    return pd.DataFrame(
        {
            "model": label,
            "mode": mode,
            C.CUSTOMER_ID: np.repeat(train.customers.id_of(rows), kk).reshape(-1, kk)[valid],
            C.ITEM_ID: train.items.id_of(np.where(valid, idx, 0))[valid],
            C.RANK: np.tile(np.arange(1, kk + 1), (len(rows), 1))[valid],
            C.SCORE: vals[valid],
        }
    )


def evaluate_models(
    models: Mapping[str, Recommender] | Sequence[Recommender],
    train: InteractionMatrix,
    test_purchases: pd.DataFrame,
    k: int | Sequence[int] = (10,),
    modes: Sequence[str] = MODES,
    keep_recommendations: bool = False,
) -> EvaluationResult:
    """Evaluate several fit models on one test set (built once); results concatenated."""
    items = models.items() if isinstance(models, Mapping) else [(m.name, m) for m in models]
    ts = build_test_set(train, test_purchases, modes)
    parts = [
        evaluate(m, train, ts, k, modes, label=name, keep_recommendations=keep_recommendations)
        for name, m in items
    ]
    if not parts:
        raise PatronError("no models to evaluate")
    recs = [p.recommendations for p in parts if p.recommendations is not None]
    return EvaluationResult(
        metrics=pd.concat([p.metrics for p in parts], ignore_index=True),
        n_customers=parts[0].n_customers,
        stats=parts[0].stats,
        timings={name: t for p in parts for name, t in p.timings.items()},
        recommendations=pd.concat(recs, ignore_index=True) if recs else None,
    )


def format_table(result: EvaluationResult, digits: int = 4) -> str:
    """A plain-text table per mode: rows (model, k), columns the metrics."""
    out = []
    s = result.stats
    if s:
        out.append(
            f"test: {s.get('test_customers', 0)} customers, {s.get('known_customers', 0)} known "
            f"in training, {s.get('cold_customers', 0)} cold (skipped); "
            f"{s.get('cold_items', 0)} test items unknown to training (not recommendable)"
        )
    m = result.metrics
    for mode in m["mode"].drop_duplicates():
        sub = m[m["mode"] == mode]
        table = sub.pivot_table(
            index=["model", "k"], columns="metric", values="value", sort=False, dropna=False
        )
        table = table[[c for c in METRICS if c in table.columns]]
        out.append("")
        out.append(
            f"mode {mode} ({MODE_TEXT.get(mode, '')}): "
            f"{result.n_customers.get(mode, 0)} customers with relevant items"
        )
        out.append(table.to_string(float_format=lambda v: f"{v:.{digits}f}"))
    return "\n".join(out)
