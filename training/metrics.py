"""Full-ranking top-K metrics, computed over the whole catalogue (no sampled negatives).

Inputs are index arrays, never ids:

* ``recs``: ``(n_users, K)`` int matrix of recommended item indices, best first; ``-1``
  pads a slot with no item (it counts as a miss and is ignored by coverage/novelty).
* ``relevant``: CSR ``(n_users, n_items)``; any stored nonzero marks a relevant item.

Per-user definitions at cut-off ``k`` (``hit_j`` = 1 when the item at rank ``j`` is
relevant, ranks ``j = 1..k``; ``R`` = the user's relevant set):

* ``precision``  = sum(hit_j) / k (padded slots count as misses).
* ``recall``     = sum(hit_j) / |R| (denominator |R|, not min(|R|, k): a user with more
  relevant items than ``k`` cannot reach recall 1).
* ``ndcg``       = DCG / IDCG, DCG = sum(hit_j / log2(j + 1)), IDCG = the DCG of
  min(|R|, k) hits at the top (binary gain, log2 discount).
* ``map``        = average precision at k: sum(precision@j * hit_j) / min(|R|, k).
* ``hit_rate``   = 1 if any hit in the top k, else 0.
* ``mrr``        = 1 / rank of the first hit in the top k, 0 if none.

Users whose relevant set is empty are excluded from every average (they have no
defined recall or nDCG); :func:`ranking_metrics` reports how many users it averaged over.

List-level measures over the same users' top-k lists:

* ``coverage``       = distinct recommended items / n_items (catalogue coverage).
* ``novelty``        = mean self-information of recommended items, -log2(p_i), where
  p_i = share of training customers who bought item i (items bought by nobody count as
  bought by one customer); averaged over each user's list, then over users. Higher =
  less popular, more novel recommendations.
* ``avg_popularity`` = mean p_i of recommended items (average recommendation
  popularity as a share of customers), averaged the same way. Lower = less popularity bias.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
LIST_LEVEL = ("coverage", "novelty", "avg_popularity")
METRICS = ACCURACY + LIST_LEVEL

__all__ = ["ACCURACY", "LIST_LEVEL", "METRICS", "hit_matrix", "ranking_metrics", "per_user_metrics"]


def hit_matrix(recs: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Bool ``(n_users, K)``: is ``recs[u, j]`` in user ``u``'s relevant row?

    A vectorised sparse lookup: relevant nonzeros become sorted keys
    ``u * n_items + i`` and each recommendation is found by binary search.
    """
    recs = np.asarray(recs, dtype=np.int64)
    rel = sp.csr_matrix(relevant, copy=True)
    if recs.ndim != 2 or recs.shape[0] != rel.shape[0]:
        raise ValueError(f"recs shape {recs.shape} does not match relevant shape {rel.shape}")
    rel.sum_duplicates()
    rel.eliminate_zeros()
    rel.sort_indices()
    n_items = rel.shape[1]
    if recs.size and recs.max() >= n_items:
        raise ValueError(f"recommended item index {recs.max()} >= n_items {n_items}")
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    if keys.size == 0:
        return np.zeros(recs.shape, dtype=bool)
    q = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return (keys[pos] == q) & (recs >= 0)


def per_user_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Accuracy metrics per user at cut-off ``k`` from a hit matrix (see module doc).

    Users with ``n_relevant == 0`` get NaN.
    """
    hits = np.asarray(hits, dtype=bool)[:, :k]
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    width = hits.shape[1]
    h = hits.astype(np.float64)
    n_hits = h.sum(axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    n_ideal = np.minimum(n_rel, k).astype(np.int64)
    idcg = ideal_cum[n_ideal]
    dcg = h @ discount[:width]
    prec_at_j = np.cumsum(h, axis=1) / np.arange(1, width + 1)
    ap_num = (prec_at_j * h).sum(axis=1)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "precision": n_hits / k,
            "recall": n_hits / n_rel,
            "ndcg": dcg / idcg,
            "map": ap_num / np.minimum(n_rel, k),
            "hit_rate": (n_hits > 0).astype(np.float64),
            "mrr": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
        }
    empty = n_rel == 0
    for v in out.values():
        v[empty] = np.nan
    return out


def ranking_metrics(
    recs: np.ndarray,
    relevant: sp.csr_matrix,
    ks: Sequence[int] = (10,),
    item_popularity: np.ndarray | None = None,
    n_customers: int | None = None,
) -> tuple[dict[tuple[str, int], float], int]:
    """Mean metrics over users with a non-empty relevant set, at each ``k`` in ``ks``.

    ``item_popularity`` (distinct training customers per item) and ``n_customers``
    (training customers) enable ``novelty`` and ``avg_popularity``; ``coverage`` needs
    only the catalogue size (``relevant.shape[1]``). Returns ``({(metric, k): value},
    n_users_averaged)``. With no user to average, every value is NaN.
    """
    recs = np.asarray(recs, dtype=np.int64)
    rel = sp.csr_matrix(relevant, copy=True)
    rel.eliminate_zeros()
    n_rel = np.diff(rel.indptr)
    keep = n_rel > 0
    recs, rel, n_rel = recs[keep], rel[keep], n_rel[keep]
    n_users, n_items = int(keep.sum()), rel.shape[1]
    hits = hit_matrix(recs, rel)
    info = pop_share = None
    if item_popularity is not None:
        pop = np.asarray(item_popularity, dtype=np.float64)
        total = float(n_customers) if n_customers else max(float(pop.max(initial=0.0)), 1.0)
        pop_share = pop / total
        info = -np.log2(np.maximum(pop, 1.0) / total)
    out: dict[tuple[str, int], float] = {}
    for k in ks:
        k = int(k)
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if k > recs.shape[1] and n_users:
            raise ValueError(f"k={k} exceeds the {recs.shape[1]} recommendations per user")
        per_user = per_user_metrics(hits, n_rel, k) if n_users else {}
        for name in ACCURACY:
            out[(name, k)] = float(per_user[name].mean()) if n_users else float("nan")
        top = recs[:, :k]
        valid = top >= 0
        out[("coverage", k)] = (
            float(np.unique(top[valid]).size / n_items) if n_users and n_items else float("nan")
        )
        if info is not None:
            out[("novelty", k)] = _list_mean(info, top, valid)
            out[("avg_popularity", k)] = _list_mean(pop_share, top, valid)
    return out, n_users


def _list_mean(values: np.ndarray, top: np.ndarray, valid: np.ndarray) -> float:
    """Mean over users (with at least one item) of the mean of ``values`` over their list."""
    counts = valid.sum(axis=1)
    has = counts > 0
    if not has.any():
        return float("nan")
    v = np.where(valid, values[np.where(valid, top, 0)], 0.0)
    return float((v.sum(axis=1)[has] / counts[has]).mean())
