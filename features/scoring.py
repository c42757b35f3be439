"""Scoring from a :class:`~features.artifact.ModelArtifact`: the one place that turns
model arrays into item scores, used by training (evaluation) and serving alike.

All functions are batched: ``rows`` is an array of customer indices (``-1`` for a
customer the model does not know, scored from ``history`` alone).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.artifact import ArtifactError, ModelArtifact

NEG_INF = np.float32(-np.inf)


def history_rows(art: ModelArtifact, rows: np.ndarray) -> sp.csr_matrix:
    """Training history for ``rows``; unknown customers (-1) get an empty row."""
    rows = np.asarray(rows, dtype=np.int64)
    known = rows >= 0
    if known.all():
        return art.history[rows]
    out = sp.lil_matrix((len(rows), art.n_items), dtype=np.float32)
    if known.any():
        out[np.flatnonzero(known)] = art.history[rows[known]]
    return out.tocsr()


def fold_in(art: ModelArtifact, history: sp.csr_matrix) -> np.ndarray:
    """User factors for customers given only their item history (ALS recalculation).

    For ALS (params ``regularization``, ``alpha``) this solves implicit's least-squares
    step for each row: ``(YtY + reg I + sum (c_i - 1) y_i y_i^T) x = sum c_i y_i`` with
    ``c_i = alpha * value_i``. Other factor models (param ``fold_in="mean"``, e.g. BPR)
    take the value-weighted mean of the history items' factors; with param
    ``bias_column`` the last column (implicit's constant-1 user column) is set to 1.
    Without a ``fold_in`` param, ALS is assumed when ``regularization`` and ``alpha`` are.
    """
    Y = np.asarray(art.arrays["item_factors"], dtype=np.float64)
    history = sp.csr_matrix(history)
    n, f = history.shape[0], Y.shape[1]
    out = np.zeros((n, f), dtype=np.float32)
    reg = art.params.get("regularization")
    alpha = float(art.params.get("alpha", 1.0))
    mode = art.params.get("fold_in")
    if mode is None:
        mode = "als" if reg is not None and "alpha" in art.params else "mean"
    if mode != "als":
        counts = np.diff(history.indptr)
        sums = history.astype(np.float64) @ Y
        nz = counts > 0
        out[nz] = (sums[nz] / np.asarray(history[nz].sum(axis=1)).reshape(-1, 1)).astype(np.float32)
        if art.params.get("bias_column"):
            out[nz, -1] = 1.0
        return out
    YtY = Y.T @ Y + float(reg) * np.eye(f)
    nz = np.flatnonzero(np.diff(history.indptr))
    if len(nz) == 0:
        return out
    # batched solves over chunks of rows, each chunk's nnz x f x f outer products <= ~64 MB
    cum = np.cumsum(np.diff(history.indptr)[nz])
    budget = max(1, (64 << 20) // (8 * f * f))
    start = 0
    while start < len(nz):
        base = cum[start - 1] if start else 0
        end = max(start + 1, int(np.searchsorted(cum, base + budget, side="right")))
        rows = nz[start:end]
        sub = history[rows]
        c = alpha * sub.data.astype(np.float64)
        Yi = Y[sub.indices]
        outer = np.einsum("ni,nj->nij", Yi * (c - 1.0)[:, None], Yi)
        A = YtY[None] + np.add.reduceat(outer, sub.indptr[:-1], axis=0)
        b = np.add.reduceat(Yi * c[:, None], sub.indptr[:-1], axis=0)
        out[rows] = np.linalg.solve(A, b[..., None])[..., 0]
        start = end
    return out


def score(
    art: ModelArtifact, rows: np.ndarray, history: sp.csr_matrix | None = None
) -> np.ndarray:
    """Dense ``len(rows) x n_items`` float32 scores.

    ``history`` (CSR, one row per entry of ``rows``) defaults to the training history;
    pass it to score with extra context items (a cart) or for unknown customers.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if history is None:
        history = history_rows(art, rows)
    history = sp.csr_matrix(history, dtype=np.float32)
    if history.shape != (len(rows), art.n_items):
        raise ValueError(f"history shape {history.shape} != ({len(rows)}, {art.n_items})")
    kind = art.kind
    if kind == "blend":
        cf = _score_cf(art, art.params.get("cf_kind", "factors"), rows, history)
        own = _score_repeat(art, history)
        w = float(art.params.get("blend_weight", 0.5))
        return (1.0 - w) * _unit_rows(cf) + w * _unit_rows(own)
    if kind == "popularity":
        pop = np.asarray(art.arrays["item_scores"], dtype=np.float32)
        return np.broadcast_to(pop, (len(rows), art.n_items)).copy()
    if kind == "repeat":
        return _score_repeat(art, history)
    return _score_cf(art, kind, rows, history)


def _score_cf(art: ModelArtifact, kind: str, rows: np.ndarray, history: sp.csr_matrix):
    if kind == "factors":
        U = np.asarray(art.arrays["user_factors"], dtype=np.float32)
        Y = np.asarray(art.arrays["item_factors"], dtype=np.float32)
        users = np.empty((len(rows), Y.shape[1]), dtype=np.float32)
        known = rows >= 0
        # a known customer with extra context (history differs from training) is refolded
        trained = history_rows(art, rows)
        same = known & (np.diff((history != trained).tocsr().indptr) == 0)
        users[same] = U[rows[same]]
        if (~same).any():
            users[~same] = fold_in(art, history[np.flatnonzero(~same)])
        return users @ Y.T
    if kind == "item_item":
        S = art.arrays["similarity"]
        out = history @ S
        out = out.toarray() if sp.issparse(out) else np.asarray(out)
        return out.astype(np.float32, copy=False)
    raise ArtifactError(f"cannot score artifact kind {kind!r}")


def _score_repeat(art: ModelArtifact, history: sp.csr_matrix) -> np.ndarray:
    pop = np.asarray(art.arrays["item_scores"], dtype=np.float32)
    tie = pop / (pop.max() + 1.0) if pop.size and pop.max() > 0 else pop
    out = history.toarray().astype(np.float32)
    out += tie * 1e-3
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Scale each row to [0, 1] so blended components are comparable."""
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((x - lo) / span).astype(np.float32)


def top_k(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` item indices and scores per row, best first.

    ``exclude`` (CSR, same shape) removes its nonzero entries (already bought);
    ``allowed`` (bool mask over items) keeps only those items. Slots with no valid item
    are padded with index ``-1`` and score ``-inf``. Modifies ``scores`` in place.
    """
    n_rows, n_items = scores.shape
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        r = np.repeat(np.arange(n_rows), np.diff(exclude.indptr))
        scores[r, exclude.indices] = NEG_INF
    if allowed is not None:
        scores[:, ~np.asarray(allowed, dtype=bool)] = NEG_INF
    k = int(min(k, n_items))
    if k <= 0:
        return np.empty((n_rows, 0), np.int64), np.empty((n_rows, 0), np.float32)
    if k < n_items:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(n_items), (n_rows, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    idx[~np.isfinite(vals)] = -1
    return idx, vals


def item_similarity(art: ModelArtifact, item_rows: np.ndarray) -> np.ndarray:
    """Dense ``len(item_rows) x n_items`` similarity of items to all items."""
    item_rows = np.asarray(item_rows, dtype=np.int64)
    kind = art.params.get("cf_kind", art.kind) if art.kind == "blend" else art.kind
    if kind == "factors":
        Y = np.asarray(art.arrays["item_factors"], dtype=np.float32)
        norms = np.linalg.norm(Y, axis=1)
        norms[norms == 0] = 1.0
        Yn = Y / norms[:, None]
        return Yn[item_rows] @ Yn.T
    if kind == "item_item":
        S = art.arrays["similarity"]
        rows = S[item_rows]
        rows = rows.toarray() if sp.issparse(rows) else np.array(rows)
        return rows.astype(np.float32)
    # popularity / repeat: items bought by the same customers (cosine on history)
    H = sp.csc_matrix(art.history)
    H.data = np.ones_like(H.data)
    norms = np.sqrt(np.asarray(H.sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    co = (H[:, item_rows].T @ H).toarray().astype(np.float32)
    return co / norms[item_rows][:, None] / norms[None, :]


def similar_items(art: ModelArtifact, item_rows: np.ndarray, k: int):
    """Top ``k`` most similar items for each of ``item_rows`` (the item itself excluded)."""
    item_rows = np.asarray(item_rows, dtype=np.int64)
    sims = item_similarity(art, item_rows)
    sims[np.arange(len(item_rows)), item_rows] = NEG_INF
    return top_k(sims, k)
