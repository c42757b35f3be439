"""Offline comparison of several models on one data set and one split, with intervals.

Every model is scored on the same held-out customers (a global time split), in both
evaluation modes of :mod:`training.evaluate` (``new``: discovery, already-bought items
filtered; ``repeat``: every test item relevant). Per-customer metric values come from
:func:`training.metrics.per_user_metrics`; one bootstrap over customers (one resample
weight matrix x the customers x (models*metrics) value matrix) gives every metric's 95%
interval and, from the same draws, every paired difference against the reference model
(interval and bootstrap p-value; a paired t-test p-value beside it).

Model specs: a registry name (``als``, ``itemknn``, ``popularity``, ... fit here on the
training period with default settings), ``artifact:PATH`` (a saved Patron artifact) or
``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` (the MLflow registry). Models trained
elsewhere are scored through their own id maps; customers or items they do not know
count as misses. If their training data reaches into the test period their scores are
optimistic: the result carries a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments import stats
from features.errors import PatronError

log = logging.getLogger(__name__)

__all__ = ["CompareResult", "compare", "parse_model_specs", "format_compare"]

_SCORE_CELLS = 1 << 24  # dense score cells per batch (~64 MB of float32), as training.evaluate
PER_CUSTOMER = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "novelty", "avg_popularity")


@dataclass
class CompareResult:
    metrics: pd.DataFrame  # model, mode, metric, k, value, low, high, customers
    differences: pd.DataFrame  # model, mode, metric, k, reference_value, value, diff, ...
    reference: str
    k: int
    primary: str = "ndcg"
    n_boot: int = 1000
    split: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        def rec(f: pd.DataFrame) -> list[dict]:
            return f.astype(object).where(f.notna(), None).to_dict(orient="records")

        return {"reference": self.reference, "k": self.k, "primary": self.primary,
                "split": self.split, "warnings": self.warnings, "timings": self.timings,
                "metrics": rec(self.metrics), "differences": rec(self.differences)}


def parse_model_specs(spec: str | list[str]) -> list[str]:
    """``"als,itemknn,artifact:PATH"`` -> a list of unique specs (order kept)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = [s.strip() for s in items if s.strip()]
    if not out:
        raise PatronError("--models: name at least one model")
    dup = {s for s in out if out.count(s) > 1}
    if dup:
        raise PatronError(f"--models: listed twice: {sorted(dup)}")
    return out


def _load_external(spec: str):
    """A fit Recommender from ``artifact:PATH`` or a ``models:/`` URI."""
    from serving.loader import resolve_local
    from training.models.registry import load_model

    if spec.startswith("artifact:"):
        return load_model(resolve_local(spec[len("artifact:"):]))
    from serving.loader import fetch_registered

    path, _ = fetch_registered(spec)  # the project's store; names it when the URI is not there
    return load_model(path)


def _list_values(recs: np.ndarray, info: np.ndarray, pop_share: np.ndarray) -> dict[str, np.ndarray]:
    """Per-customer novelty and popularity of the list (as :mod:`training.metrics` defines
    them). A list with no item gets the mean of the others (keeps the mean, as evaluation
    skips such lists)."""
    valid = recs >= 0
    safe = np.where(valid, recs, 0)
    counts = valid.sum(axis=1)
    out = {}
    for name, v in (("novelty", info), ("avg_popularity", pop_share)):
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.where(valid, v[safe], 0.0).sum(axis=1) / counts
        per[counts == 0] = np.nanmean(per) if (counts > 0).any() else 0.0
        out[name] = per
    return out


def _leak_warning(spec: str, metadata: dict, cutoff: str) -> str | None:
    """A warning when a model trained elsewhere saw purchases from the test period."""
    split_md = metadata.get("split") or {}
    if split_md.get("train_span"):
        trained_to = split_md["train_span"][-1]
    else:  # trained on all of its data
        trained_to = ((metadata.get("data") or {}).get("span") or [None])[-1]
    if not trained_to:
        return f"{spec}: its training period is unknown; if it covers the test period its scores are optimistic"
    if pd.Timestamp(trained_to) >= pd.Timestamp(cutoff):
        return (f"{spec}: trained on data up to {trained_to}, past the test cutoff {cutoff}: "
                "its scores are optimistic")
    return None


def _recommend(model, train, rows: np.ndarray, k: int, filter_bought: bool, native: bool):
    """Top-k item indices in ``train``'s item space for ``train`` customer ``rows``."""
    batch = int(max(16, min(2048, _SCORE_CELLS // max(model.fitted.n_items, 1))))
    if native:
        idx, _ = model.recommend_indices(rows, k, filter_already_bought=filter_bought,
                                         batch_size=batch)
    else:
        art = model.fitted
        ext = train.customers.id_of(rows)
        arows = art.customers.index_of(ext, missing="ignore")
        idx, _ = model.recommend_indices(arows, k, filter_already_bought=filter_bought,
                                         batch_size=batch)
        valid = idx >= 0
        mapped = np.full(idx.shape, -1, dtype=np.int64)
        if valid.any():
            mapped[valid] = train.items.index_of(art.items.id_of(idx[valid]), missing="ignore")
        idx = mapped
    if idx.shape[1] < k:
        idx = np.hstack([idx, np.full((idx.shape[0], k - idx.shape[1]), -1, np.int64)])
    return idx


def compare(
    purchases: pd.DataFrame,
    models: list[str] | str,
    reference: str | None = None,
    k: int = 10,
    holdout_days: int = 28,
    modes: tuple[str, ...] = ("new", "repeat"),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    max_customers: int | None = None,
) -> CompareResult:
    """Fit/load every model, score both modes, bootstrap intervals and paired differences.

    ``max_customers`` evaluates a random sample of test customers (same for all models).
    """
    from features.matrix import MatrixConfig, build_interactions
    from training.evaluate import build_test_set, fit_model
    from training.metrics import hit_matrix, per_user_metrics
    from training.models.registry import MODELS
    from training.split import split_global_time

    specs = parse_model_specs(models)
    reference = reference or specs[0]
    if reference not in specs:
        raise PatronError(f"--reference {reference!r} is not one of --models {specs}")
    split = split_global_time(purchases, holdout_days=holdout_days, min_customers=1)
    train = build_interactions(split.train, MatrixConfig())
    ts = build_test_set(train, split.test, modes)
    warnings: list[str] = []
    timings: dict[str, dict] = {}

    fitted = {}
    for spec in specs:
        t0 = time.perf_counter()
        if spec in MODELS:
            fitted[spec] = (fit_model(MODELS[spec](), train, split.train), True)
        elif spec.startswith(("artifact:", "models:/")):
            m = _load_external(spec)
            fitted[spec] = (m, False)
            warn = _leak_warning(spec, m.fitted.metadata, split.description["cutoff"])
            if warn:
                warnings.append(warn)
        else:
            raise PatronError(
                f"--models: {spec!r} is neither a model name ({sorted(MODELS)}), "
                "artifact:PATH nor models:/NAME@ALIAS"
            )
        timings[spec] = {"fit_or_load_s": round(time.perf_counter() - t0, 3)}

    rng = np.random.default_rng(seed)
    metric_rows, diff_rows = [], []
    pop = np.bincount(train.matrix.indices[train.matrix.data > 0], minlength=train.n_items)
    pop_share = pop / max(train.n_customers, 1)
    info = -np.log2(np.maximum(pop, 1.0) / max(train.n_customers, 1))
    for mode in modes:
        rel = ts.relevant[mode]
        keep = np.flatnonzero(np.diff(rel.indptr) > 0)
        if max_customers and len(keep) > max_customers:
            keep = np.sort(rng.choice(keep, max_customers, replace=False))
        if len(keep) == 0:
            warnings.append(f"mode {mode}: no test customer has a relevant item; skipped")
            continue
        rows, rel_m = ts.rows[keep], rel[keep]
        n_rel = np.diff(rel_m.indptr)
        cols, names, coverage = [], [], {}
        for spec in specs:
            model, native = fitted[spec]
            t0 = time.perf_counter()
            recs = _recommend(model, train, rows, k, mode == "new", native)
            per = per_user_metrics(hit_matrix(recs, rel_m), n_rel, k)
            per.update(_list_values(recs, info, pop_share))
            coverage[spec] = np.unique(recs[recs >= 0]).size / train.n_items
            timings[spec][f"score_{mode}_s"] = round(time.perf_counter() - t0, 3)
            for m in PER_CUSTOMER:
                cols.append(per[m])
                names.append((spec, m))
        values = np.column_stack(cols)
        boots = stats.bootstrap_means(values, n_boot, rng)
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
        est = values.mean(axis=0)
        col = {name: j for j, name in enumerate(names)}
        for (spec, m), j in col.items():
            metric_rows.append({"model": spec, "mode": mode, "metric": m, "k": k, "value": est[j],
                                "low": lo[j], "high": hi[j], "customers": len(rows)})
        metric_rows += [{"model": spec, "mode": mode, "metric": "coverage", "k": k, "value": c,
                         "low": np.nan, "high": np.nan, "customers": len(rows)}
                        for spec, c in coverage.items()]  # a catalogue share: no per-customer CI
        for spec in specs:
            if spec == reference:
                continue
            for m in PER_CUSTOMER:
                j, r = col[(spec, m)], col[(reference, m)]
                d = boots[:, j] - boots[:, r]
                dhat = est[j] - est[r]
                dlo, dhi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel_b = boots[:, j] / boots[:, r] - 1
                    rel_hat = est[j] / est[r] - 1 if est[r] else np.nan
                rel_b = rel_b[np.isfinite(rel_b)]
                rlo, rhi = (np.quantile(rel_b, [alpha / 2, 1 - alpha / 2]) if rel_b.size
                            else (np.nan, np.nan))
                p_boot = min(1.0, (1 + np.sum(np.abs(d - dhat) >= abs(dhat))) / (n_boot + 1))
                diff_rows.append({
                    "model": spec, "mode": mode, "metric": m, "k": k,
                    "reference_value": est[r], "value": est[j], "diff": dhat, "diff_low": dlo,
                    "diff_high": dhi, "relative": rel_hat, "relative_low": rlo,
                    "relative_high": rhi, "p_bootstrap": p_boot,
                    "p_ttest": stats.paired_ttest(values[:, r], values[:, j])[1],
                })
    return CompareResult(
        metrics=pd.DataFrame(metric_rows), differences=pd.DataFrame(diff_rows),
        reference=reference, k=k, n_boot=n_boot, split={**split.description, **ts.stats},
        warnings=warnings, timings=timings,
    )


def format_compare(result: CompareResult, metrics: tuple[str, ...] = ("ndcg", "recall", "hit_rate")) -> str:
    """Plain-text tables: value [low, high] per model and mode; differences vs reference."""
    out = [f"split: cutoff {result.split.get('cutoff')}, {result.split.get('known_customers')} "
           f"test customers known in training; k={result.k}; 95% bootstrap intervals over customers"]
    m = result.metrics
    if m.empty:
        return "\n".join(out + ["no metrics"])
    m = m[m["metric"].isin(metrics)].copy()
    m["cell"] = [f"{v:.4f} [{a:.4f}, {b:.4f}]" for v, a, b in zip(m["value"], m["low"], m["high"], strict=True)]
    for mode, grp in m.groupby("mode", sort=False):
        out.append(f"\nmode {mode} ({int(grp['customers'].iloc[0])} customers)")
        out.append(grp.pivot(index="model", columns="metric", values="cell")
                   .reindex(columns=list(metrics)).reindex(grp["model"].unique()).to_string())
    d = result.differences
    if not d.empty:
        d = d[d["metric"].isin(metrics)].copy()
        floor = 1.0 / (result.n_boot + 1)  # the smallest bootstrap p-value there is
        d["cell"] = [
            f"{v:+.4f} [{a:+.4f}, {b:+.4f}] " + (f"p<={floor:.1g}" if p <= floor * 1.01 else f"p={p:.3g}")
            for v, a, b, p in zip(d["diff"], d["diff_low"], d["diff_high"], d["p_bootstrap"], strict=True)
        ]
        for mode, grp in d.groupby("mode", sort=False):
            out.append(f"\nmode {mode}: difference against {result.reference} (paired bootstrap)")
            out.append(grp.pivot(index="model", columns="metric", values="cell")
                       .reindex(columns=list(metrics)).reindex(grp["model"].unique()).to_string())
    for w in result.warnings:
        out.append(f"WARNING: {w}")
    return "\n".join(out)
