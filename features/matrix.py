"""Build the customers x items implicit-feedback matrix from clean purchases.

:func:`build_interactions` turns purchase lines into an :class:`InteractionMatrix`:

1. ids -> dense codes (new sorted :class:`IdMap`\\ s, or given maps: unknown ids dropped);
2. each line gets a value (``weighting``) times an optional time-decay factor
   ``0.5 ** (age_days / half_life_days)``, age measured back from ``reference_time``;
3. lines of the same (customer, item) are summed in one ``coo -> csr`` conversion
   (``binary`` with decay keeps the factor of the most recent line instead of a sum);
4. cells whose value is not positive (e.g. spend 0) are dropped;
5. minimum-support filters, iterated until both hold (a k-core), on the axes whose map was
   built here;
6. optional BM25 / TF-IDF reweighting, exactly as ``implicit``'s ``BM25Recommender`` /
   ``TFIDFRecommender`` apply them to a customers x items matrix:
   ``bm25_weight(X.T, K1, B).T`` (idf per customer, length normalisation per item).

``counts`` is always the raw number of purchase lines per cell (no decay, no reweighting),
on the same sparsity pattern as ``matrix``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from features import columns as C
from features.errors import PatronError
from features.idmap import IdMap
from features.interactions import InteractionMatrix

__all__ = ["MatrixConfig", "build_interactions", "encode_ids", "bm25_weight", "tfidf_weight"]

Weighting = Literal["binary", "count", "log1p", "quantity", "spend"]
_SECONDS_PER_DAY = 86400.0


class MatrixConfig(BaseModel):
    """How purchase lines become matrix values (logged with the model, tunable)."""

    model_config = ConfigDict(extra="forbid")

    weighting: Weighting = "log1p"
    """Value of a (customer, item) cell: ``binary`` 1 if bought; ``count`` number of lines;
    ``log1p`` log(1 + count); ``quantity`` summed quantity (1 per line when the column is
    absent or missing); ``spend`` summed quantity x unit price (needs ``price``). With
    ``half_life_days`` every line counts with its decay factor (``binary``: the factor of
    the most recent line)."""
    reweight: Literal["bm25", "tfidf"] | None = None
    """Reweighting after ``weighting``, as implicit's BM25/TF-IDF recommenders apply it:
    ``bm25_weight(X.T, bm25_k1, bm25_b).T`` / ``tfidf_weight(X.T).T``."""
    bm25_k1: float = Field(1.2, gt=0)
    """BM25 term-saturation constant K1."""
    bm25_b: float = Field(0.75, ge=0, le=1)
    """BM25 length-normalisation strength B (0 = none, 1 = full)."""
    half_life_days: float | None = Field(None, gt=0)
    """Time decay: a line ``age`` days before ``reference_time`` weighs
    ``0.5 ** (age / half_life_days)``; lines after ``reference_time`` weigh 1. None = no decay."""
    reference_time: datetime | None = None
    """Time the ages are measured from; None = the last timestamp in the purchases."""
    min_item_customers: int = Field(1, ge=1)
    """Drop items bought by fewer distinct customers (only when the item map is built here)."""
    min_customer_items: int = Field(1, ge=1)
    """Drop customers with fewer distinct items (only when the customer map is built here).
    Both filters are applied iteratively until both hold (dropping items can push a
    customer under the limit and vice versa)."""


def _col(purchases: pd.DataFrame, name: str, why: str) -> pd.Series:
    if name not in purchases.columns:
        raise PatronError(f"purchases: column {name!r} is required ({why})")
    return purchases[name]


def _sorted_map(uniques: np.ndarray) -> tuple[np.ndarray, IdMap]:
    """Map of the sorted ``uniques`` and, for each unique, its index in that map."""
    idmap = IdMap(uniques)
    order = np.argsort(idmap.ids, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank, IdMap(idmap.ids[order])


def _int_codes(vals: np.ndarray, idmap: IdMap | None) -> tuple[np.ndarray, IdMap] | None:
    """Codes of int64 values through a dense lookup table; None when the range is too wide."""
    if not len(vals):
        return None
    lo, hi = int(vals.min()), int(vals.max())
    if idmap is not None and len(idmap):
        lo, hi = min(lo, int(idmap.ids.min())), max(hi, int(idmap.ids.max()))
    span = hi - lo + 1
    if span > 4 * len(vals) + 32_000_000:  # int32 table of at most ~128 MB beyond 4 x data
        return None
    off = vals - lo
    if idmap is None:
        present = np.zeros(span, dtype=bool)
        present[off] = True
        lut = np.cumsum(present, dtype=np.int32) - 1
        return lut[off].astype(np.int64), IdMap(np.flatnonzero(present) + lo)
    lut = np.full(span, -1, dtype=np.int32)
    lut[idmap.ids - lo] = np.arange(len(idmap), dtype=np.int32)
    return lut[off].astype(np.int64), idmap


def _str_codes(vals: pd.Series, idmap: IdMap | None) -> tuple[np.ndarray, IdMap] | None:
    """Codes of string values through Arrow hashing (faster than Python-object hashing)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:  # Arrow-backed pandas strings convert without a copy
        arr = pa.array(vals, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = arr.cast(pa.string()) if pa.types.is_null(arr.type) else None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        arr = None
    if arr is None:
        return None
    if idmap is None:
        enc = arr.dictionary_encode()
        uniques = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=str)
        codes = enc.indices.fill_null(-1).to_numpy().astype(np.int64)
        rank, idmap = _sorted_map(uniques)
        rank = np.append(rank, -1)  # code -1 stays -1
        return rank[codes], idmap
    idx = pc.index_in(arr, value_set=pa.array(idmap.ids.astype(str), type=pa.string()))
    return idx.fill_null(-1).to_numpy().astype(np.int64), idmap


def encode_ids(values: pd.Series | np.ndarray, idmap: IdMap | None = None
               ) -> tuple[np.ndarray, IdMap]:
    """Dense codes of ``values`` and their map.

    Without ``idmap`` a new map of the sorted distinct non-missing values is built (the
    same ids as ``IdMap.from_values``); with one, values not in it (and missing values) get
    code -1. Vectorised: a lookup table for int ids, Arrow hashing for strings,
    category codes for categoricals, pandas hashing otherwise.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        cat_codes = s.cat.codes.to_numpy().astype(np.int64)
        cats = s.cat.categories.to_numpy()
        if idmap is None:
            used = np.bincount(cat_codes[cat_codes >= 0], minlength=len(cats)) > 0
            cats_codes, idmap = encode_ids(pd.Series(cats[used]))
            lut = np.full(len(cats) + 1, -1, dtype=np.int64)
            lut[np.flatnonzero(used)] = cats_codes
        else:
            lut = np.append(encode_ids(pd.Series(cats), idmap)[0], -1)
        return lut[cat_codes], idmap
    arr = s.to_numpy()
    kind = arr.dtype.kind
    res = None
    if kind in "iu" and (idmap is None or idmap.is_numeric):
        res = _int_codes(arr.astype(np.int64, copy=False), idmap)
    elif kind in "OUS" and (idmap is None or not idmap.is_numeric):
        res = _str_codes(s, idmap)
    if res is not None:
        return res
    if kind in "iu":  # wide-range ints: pandas hashing
        arr = arr.astype(np.int64, copy=False)
        if idmap is None:
            codes, uniques = pd.factorize(arr, sort=True)
            return codes.astype(np.int64), IdMap(uniques)
        if idmap.is_numeric:
            return pd.Index(idmap.ids).get_indexer(arr).astype(np.int64), idmap
    if idmap is None:
        idmap = IdMap.from_values(s)
    return idmap.index_of(arr, missing="ignore"), idmap


def bm25_weight(x: sp.spmatrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """implicit's ``bm25_weight`` on rows = documents, columns = terms (CSR out)."""
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)
    if x.nnz == 0:
        return x
    n = float(x.shape[0])
    cols = x.indices
    idf = np.log(n) - np.log1p(np.bincount(cols, minlength=x.shape[1]))
    row_sums = np.asarray(x.sum(axis=1)).ravel()
    length_norm = (1.0 - b) + b * row_sums / row_sums.mean()
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    x.data = x.data * (k1 + 1.0) / (k1 * length_norm[rows] + x.data) * idf[cols]
    return x


def tfidf_weight(x: sp.spmatrix) -> sp.csr_matrix:
    """implicit's ``tfidf_weight`` on rows = documents, columns = terms (CSR out)."""
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)
    if x.nnz == 0:
        return x
    idf = np.log(float(x.shape[0])) - np.log1p(np.bincount(x.indices, minlength=x.shape[1]))
    x.data = np.sqrt(x.data) * idf[x.indices]
    return x


def _decay(purchases: pd.DataFrame, keep: np.ndarray, config: MatrixConfig
           ) -> tuple[np.ndarray, pd.Timestamp]:
    ts = _col(purchases, C.TIMESTAMP, "half_life_days is set")
    if not pd.api.types.is_datetime64_any_dtype(ts):
        try:
            ts = pd.to_datetime(ts)
        except (ValueError, TypeError) as exc:
            raise PatronError(f"purchases: column {C.TIMESTAMP!r} is not a timestamp: {exc}"
                              ) from None
    t = ts.to_numpy(dtype="datetime64[ns]")[keep]
    if config.reference_time is not None:
        ref = pd.Timestamp(config.reference_time)
        if ref.tzinfo is not None:
            ref = ref.tz_convert(None)
    else:
        if not len(t) or np.isnat(t).all():
            raise PatronError("purchases: no timestamps to take the decay reference time from")
        ref = pd.Timestamp(np.nanmax(t))
    age = (ref.to_datetime64() - t).astype("timedelta64[ns]").astype(np.float64) / 1e9
    age = np.maximum(age / _SECONDS_PER_DAY, 0.0)
    age[np.isnan(age)] = np.inf  # missing timestamp -> weight 0
    return np.exp2(-age / config.half_life_days), ref


def _line_values(purchases: pd.DataFrame, keep: np.ndarray, config: MatrixConfig
                 ) -> np.ndarray | None:
    """Per kept line: quantity or spend (None for binary/count/log1p)."""
    if config.weighting not in ("quantity", "spend"):
        return None
    if C.QUANTITY in purchases.columns:
        q = pd.to_numeric(purchases[C.QUANTITY], errors="coerce").to_numpy(np.float64)[keep]
        q = np.where(np.isnan(q), 1.0, q)
    else:
        q = np.ones(int(keep.sum()))
    if config.weighting == "quantity":
        return q
    p = pd.to_numeric(_col(purchases, C.PRICE, "weighting='spend'"), errors="coerce")
    p = p.to_numpy(np.float64)[keep]
    return q * np.where(np.isnan(p), 0.0, p)


def _support_filter(m: sp.csr_matrix, min_items: int, min_customers: int,
                    rows_free: bool, cols_free: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row and column masks of the k-core under the support limits (free axes only)."""
    rows = np.ones(m.shape[0], dtype=bool)
    cols = np.ones(m.shape[1], dtype=bool)
    pattern = m.copy()
    pattern.data = np.ones_like(pattern.data)
    while True:
        sub = pattern[rows][:, cols] if not (rows.all() and cols.all()) else pattern
        new_rows, new_cols = rows.copy(), cols.copy()
        if rows_free:
            new_rows[rows] = np.diff(sub.indptr) >= min_items
        if cols_free:
            new_cols[cols] = np.bincount(sub.indices, minlength=sub.shape[1]) >= min_customers
        if (new_rows == rows).all() and (new_cols == cols).all():
            return rows, cols
        rows, cols = new_rows, new_cols


def build_interactions(
    purchases: pd.DataFrame,
    config: MatrixConfig | None = None,
    customers: IdMap | None = None,
    items: IdMap | None = None,
) -> InteractionMatrix:
    """Clean purchases -> weighted customers x items :class:`InteractionMatrix`.

    ``customers`` / ``items``: map onto these ids (lines with unknown or missing ids are
    dropped, the maps and so the shape are kept, support filters skip that axis);
    otherwise new sorted maps of the ids present are built. ``weighting`` of the result
    is ``config.model_dump(mode="json")`` with the resolved ``reference_time`` when
    decaying; ``counts`` holds the raw line counts.
    """
    config = config or MatrixConfig()
    r, customers_out = encode_ids(_col(purchases, C.CUSTOMER_ID, "canonical schema"), customers)
    c, items_out = encode_ids(_col(purchases, C.ITEM_ID, "canonical schema"), items)
    keep = (r >= 0) & (c >= 0)
    all_kept = bool(keep.all())
    if not all_kept:
        r, c = r[keep], c[keep]
    shape = (len(customers_out), len(items_out))
    r = r.astype(np.int32 if shape[0] < 2**31 else np.int64, copy=False)
    c = c.astype(np.int32 if shape[1] < 2**31 else np.int64, copy=False)

    def to_csr(data: np.ndarray) -> sp.csr_matrix:
        m = sp.coo_matrix((data, (r, c)), shape=shape).tocsr()
        m.sum_duplicates()
        return m

    weighting = config.model_dump(mode="json")
    decay = None
    if config.half_life_days is not None:
        decay, ref = _decay(purchases, keep, config)
        weighting["reference_time"] = ref.isoformat()
    line_vals = _line_values(purchases, keep, config)

    if line_vals is None and (decay is None or config.weighting == "binary"):
        counts = to_csr(np.ones(len(r), dtype=np.float32))
        values = counts.copy()
        if config.weighting == "binary":
            values.data = np.ones_like(values.data)
        if decay is not None:
            # binary + decay: the most recent line's factor; lines sorted by cell key are
            # in CSR order, so a max-reduce per run of equal keys gives the data
            key = r.astype(np.int64) * shape[1] + c
            order = np.argsort(key)
            key = key[order]
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            data = np.maximum.reduceat(decay[order], starts) if len(starts) else np.zeros(0)
            values = sp.csr_matrix((data, counts.indices.copy(), counts.indptr.copy()),
                                   shape=shape)
    else:
        # one conversion sums values (real part) and line counts (imaginary part)
        line = np.ones(len(r)) if line_vals is None else line_vals
        if decay is not None:
            line = line * decay
        both = to_csr(line + 1j)
        values = sp.csr_matrix((both.data.real.copy(), both.indices, both.indptr), shape=shape)
        counts = sp.csr_matrix((both.data.imag.astype(np.float32), both.indices.copy(),
                                both.indptr.copy()), shape=shape)
    if config.weighting == "log1p":
        values.data = np.log1p(values.data)

    # drop non-positive cells from both matrices (same pattern)
    bad = ~(values.data > 0)
    if bad.any():
        values.data[bad] = 0
        counts.data[bad] = 0
        values.eliminate_zeros()
        counts.eliminate_zeros()

    rows_free, cols_free = customers is None, items is None
    if (rows_free and config.min_customer_items > 1) or (cols_free and config.min_item_customers > 1) \
            or (bad.any() and (rows_free or cols_free)):
        keep_r, keep_c = _support_filter(values, config.min_customer_items,
                                         config.min_item_customers, rows_free, cols_free)
        if not (keep_r.all() and keep_c.all()):
            values = values[keep_r][:, keep_c]
            counts = counts[keep_r][:, keep_c]
            customers_out = IdMap(customers_out.ids[keep_r])
            items_out = IdMap(items_out.ids[keep_c])

    if config.reweight == "bm25":
        values = bm25_weight(values.T, config.bm25_k1, config.bm25_b).T.tocsr()
    elif config.reweight == "tfidf":
        values = tfidf_weight(values.T).T.tocsr()

    return InteractionMatrix(
        matrix=values.astype(np.float32),
        customers=customers_out,
        items=items_out,
        weighting=weighting,
        counts=counts.astype(np.float32),
    )
