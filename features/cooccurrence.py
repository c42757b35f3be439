"""Basket co-occurrence and association rules (cross-sell).

A *basket* is one ``order_id``. Lines without an order id (or logs without the column)
fall back to customer + calendar day as the basket. The binary baskets x items CSR ``B``
gives the co-occurrence counts ``B.T @ B``: entry (a, b) is the number of baskets holding
both a and b, the diagonal the number of baskets holding the item.

Rules a -> b over ``N`` baskets: ``support = n_ab / N``, ``confidence = n_ab / n_a``,
``lift = n_ab * N / (n_a * n_b)``. :func:`cross_sell_arrays` keeps the pairs with
``n_ab >= min_support_baskets``, ``confidence >= min_confidence`` and ``lift >= min_lift``
(at most ``max_per_item`` per antecedent, by lift) and returns them as the artifact arrays
``xsell_lift`` / ``xsell_confidence`` (CSR items x items, row = antecedent).

Memory: items in fewer than ``min_support_baskets`` baskets cannot be part of a kept pair,
so they are pruned before the product, and the product runs over blocks of items so only
one block of raw pair counts exists at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import columns as C
from features.errors import PatronError
from features.idmap import IdMap
from features.matrix import encode_ids

__all__ = [
    "Baskets", "basket_matrix", "cooccurrence_counts", "association_rules",
    "cross_sell_arrays",
]


@dataclass(frozen=True)
class Baskets:
    """Binary baskets x items CSR (int32 ones) with the item map."""

    matrix: sp.csr_matrix
    items: IdMap

    @property
    def n_baskets(self) -> int:
        return self.matrix.shape[0]

    @property
    def item_baskets(self) -> np.ndarray:
        """Number of baskets holding each item (int64)."""
        return np.bincount(self.matrix.indices, minlength=self.matrix.shape[1]).astype(np.int64)


def _basket_codes(purchases: pd.DataFrame) -> np.ndarray:
    """A basket code per line: order_id, else customer + calendar day; -1 if neither."""
    n = len(purchases)
    codes = np.full(n, -1, dtype=np.int64)
    if C.ORDER_ID in purchases.columns:
        codes, omap = encode_ids(purchases[C.ORDER_ID])
        n_orders = len(omap)
    else:
        n_orders = 0
    missing = codes < 0
    if missing.any():
        if C.CUSTOMER_ID not in purchases.columns or C.TIMESTAMP not in purchases.columns:
            raise PatronError(
                f"purchases: baskets need {C.ORDER_ID!r} or both {C.CUSTOMER_ID!r} and "
                f"{C.TIMESTAMP!r}"
            )
        sub = purchases.loc[missing, [C.CUSTOMER_ID, C.TIMESTAMP]]
        cust, _ = encode_ids(sub[C.CUSTOMER_ID])
        ts = pd.to_datetime(sub[C.TIMESTAMP]).to_numpy("datetime64[ns]")
        ok = (cust >= 0) & ~np.isnat(ts)
        day = ts[ok].astype("datetime64[D]").astype(np.int64)
        span = int(day.max() - day.min() + 1) if len(day) else 1
        k, _ = encode_ids(cust[ok] * span + (day - (day.min() if len(day) else 0)))
        fallback = np.full(len(sub), -1, dtype=np.int64)
        fallback[ok] = k + n_orders
        codes[missing] = fallback
    return codes


def basket_matrix(purchases: pd.DataFrame, items: IdMap | None = None) -> Baskets:
    """Binary baskets x items CSR; with ``items``, lines of other items are dropped (and
    baskets left empty are not counted)."""
    if C.ITEM_ID not in purchases.columns:
        raise PatronError(f"purchases: column {C.ITEM_ID!r} is required for baskets")
    b = _basket_codes(purchases)
    c, items = encode_ids(purchases[C.ITEM_ID], items)
    ok = (b >= 0) & (c >= 0)
    b, c = b[ok], c[ok]
    # renumber baskets densely (baskets without known items vanish)
    b_codes, bmap = encode_ids(b)
    m = sp.coo_matrix(
        (np.ones(len(b), dtype=np.int32), (b_codes, c)), shape=(len(bmap), len(items))
    ).tocsr()
    m.sum_duplicates()
    m.data[:] = 1
    return Baskets(matrix=m, items=items)


def cooccurrence_counts(baskets: Baskets | sp.spmatrix) -> sp.csr_matrix:
    """Items x items CSR (int) of baskets holding both items; diagonal = baskets per item."""
    b = baskets.matrix if isinstance(baskets, Baskets) else sp.csr_matrix(baskets)
    b = sp.csr_matrix(b, dtype=np.int32)
    b.data[:] = 1
    out = (b.T @ b).tocsr()
    out.sort_indices()
    return out


def association_rules(
    baskets: Baskets,
    min_support_baskets: int = 2,
    min_confidence: float = 0.0,
    min_lift: float = 0.0,
    block_items: int = 4096,
) -> pd.DataFrame:
    """All rules a -> b (a != b) passing the thresholds, as a DataFrame of item indices:
    ``antecedent, consequent, n_ab, support, confidence, lift``.

    Computed blockwise over consequents, after pruning items below ``min_support_baskets``.
    """
    n_b = baskets.n_baskets
    per_item = baskets.item_baskets
    frequent = np.flatnonzero(per_item >= max(min_support_baskets, 1))
    cols = {k: [] for k in ("a", "b", "n")}
    if n_b and len(frequent):
        sub = baskets.matrix[:, frequent]
        sub = sp.csr_matrix(sub, dtype=np.int32)
        sub_t = sub.T.tocsr()
        csc = sub.tocsc()
        for lo in range(0, len(frequent), block_items):
            hi = min(lo + block_items, len(frequent))
            block = (sub_t @ csc[:, lo:hi]).tocoo()  # frequent x block
            keep = block.data >= min_support_baskets
            a = block.row[keep].astype(np.int64)
            bb = block.col[keep].astype(np.int64) + lo
            n_ab = block.data[keep].astype(np.int64)
            keep = a != bb
            a, bb, n_ab = frequent[a[keep]], frequent[bb[keep]], n_ab[keep]
            conf = n_ab / per_item[a]
            lift = conf * n_b / per_item[bb]
            keep = (conf >= min_confidence) & (lift >= min_lift)
            cols["a"].append(a[keep])
            cols["b"].append(bb[keep])
            cols["n"].append(n_ab[keep])
    a = np.concatenate(cols["a"]) if cols["a"] else np.zeros(0, np.int64)
    bb = np.concatenate(cols["b"]) if cols["b"] else np.zeros(0, np.int64)
    n_ab = np.concatenate(cols["n"]) if cols["n"] else np.zeros(0, np.int64)
    conf = n_ab / np.maximum(per_item[a], 1)
    lift = conf * n_b / np.maximum(per_item[bb], 1)
    return pd.DataFrame({
        "antecedent": a, "consequent": bb, "n_ab": n_ab,
        "support": n_ab / max(n_b, 1), "confidence": conf, "lift": lift,
    })


def _top_per_row(a: np.ndarray, key: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the ``k`` largest ``key`` per value of ``a`` (all when k is None)."""
    if k is None or not len(a):
        return np.arange(len(a))
    order = np.lexsort((-key, a))
    a_sorted = a[order]
    start = np.searchsorted(a_sorted, a_sorted, side="left")
    rank = np.arange(len(a)) - start
    return order[rank < k]


def cross_sell_arrays(
    purchases: pd.DataFrame,
    items: IdMap,
    min_support_baskets: int = 5,
    min_confidence: float = 0.05,
    min_lift: float = 1.0,
    max_per_item: int | None = 100,
) -> dict:
    """Artifact arrays for cross-sell over ``items``: ``xsell_lift``, ``xsell_confidence``
    (float32 CSR items x items, row = antecedent, only rules passing the thresholds, at
    most ``max_per_item`` per antecedent with the highest lift), ``item_baskets`` (int64
    baskets per item) and ``n_baskets`` (int; baskets holding a known item)."""
    baskets = basket_matrix(purchases, items)
    rules = association_rules(baskets, min_support_baskets, min_confidence, min_lift)
    a = rules["antecedent"].to_numpy()
    b = rules["consequent"].to_numpy()
    lift = rules["lift"].to_numpy()
    conf = rules["confidence"].to_numpy()
    sel = _top_per_row(a, lift, max_per_item)
    n = len(items)

    def csr(values: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((values[sel].astype(np.float32), (a[sel], b[sel])), shape=(n, n))
        m.sort_indices()
        return m

    return {
        "xsell_lift": csr(lift),
        "xsell_confidence": csr(conf),
        "item_baskets": baskets.item_baskets,
        "n_baskets": int(baskets.n_baskets),
    }
