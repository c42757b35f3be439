"""Per-item table: category, typical unit price, price tier within category, name, support.

Used by serving (up-sell: same category, higher tier; item names in reasons) and attached
to every model artifact (``ModelArtifact.item_table``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import columns as C
from features.errors import PatronError
from features.idmap import IdMap
from features.matrix import encode_ids

__all__ = ["item_table", "price_tiers"]


def _most_frequent(item_codes: np.ndarray, values: pd.Series, n_items: int) -> np.ndarray:
    """Most frequent non-missing value per item (ties: the smallest value); None if none."""
    out = np.full(n_items, None, dtype=object)
    v, vmap = encode_ids(values)
    ok = (v >= 0) & (item_codes >= 0)
    if not ok.any():
        return out
    m = sp.csr_matrix(
        (np.ones(int(ok.sum()), dtype=np.int64), (item_codes[ok], v[ok])),
        shape=(n_items, len(vmap)),
    )
    m.sum_duplicates()  # sorted indices: the first maximum is the smallest value
    counts = np.diff(m.indptr)
    has = counts > 0
    rows = np.repeat(np.arange(n_items), counts)
    row_max = np.maximum.reduceat(m.data, m.indptr[:-1][has])
    at_max = np.flatnonzero(m.data == np.repeat(row_max, counts[has]))
    first = at_max[np.r_[True, rows[at_max][1:] != rows[at_max][:-1]]]
    out[rows[first]] = vmap.ids[m.indices[first]]
    return out


def price_tiers(price: np.ndarray, group: np.ndarray, n_tiers: int = 3) -> pd.api.extensions.ExtensionArray:
    """Price tier 1..``n_tiers`` of each price within its group (by price rank).

    The cheapest item of a group gets tier 1 and the dearest tier ``n_tiers``; in between,
    ranks are cut into ``n_tiers`` equal-width bins: ``1 + (rank - 1) * n_tiers // (n - 1)``
    (clipped), with equal prices sharing the lowest rank. A group with one priced item gets
    the middle tier ``(n_tiers + 1) // 2``; two items get 1 and ``n_tiers``. Missing price ->
    missing tier (pandas ``Int64`` NA).
    """
    if n_tiers < 1:
        raise PatronError(f"n_tiers must be >= 1, got {n_tiers}")
    df = pd.DataFrame({"p": np.asarray(price, dtype=np.float64), "g": group})
    ok = df["p"].notna()
    g = df.loc[ok].groupby("g", dropna=False, sort=False)["p"]
    rank = g.rank(method="min").to_numpy() - 1.0  # 0-based
    n = g.transform("size").to_numpy()
    tier = np.where(
        n > 1,
        1 + np.minimum(n_tiers - 1, (rank * n_tiers) // np.maximum(n - 1, 1)),
        (n_tiers + 1) // 2,
    )
    out = pd.array(np.full(len(df), pd.NA), dtype="Int64")
    out[ok.to_numpy()] = tier.astype(np.int64)
    return out


def item_table(
    purchases: pd.DataFrame, items: IdMap | None = None, n_tiers: int = 3
) -> pd.DataFrame:
    """One row per item: ``item_id, category, price, price_tier, item_name, n_customers,
    n_lines``.

    ``items`` fixes the rows (in its order; items without lines get no price, tier or
    name and zero counts; lines of other items are ignored); otherwise all items of the
    purchases, sorted. ``category`` and ``item_name`` are the most frequent value per item
    (missing when the column is absent); ``price`` is the median positive unit price;
    ``price_tier`` ranks the price within the item's category (:func:`price_tiers`; one
    group when there is no category).
    """
    if C.ITEM_ID not in purchases.columns:
        raise PatronError(f"purchases: column {C.ITEM_ID!r} is required for the item table")
    codes, items = encode_ids(purchases[C.ITEM_ID], items)
    n = len(items)
    ok = codes >= 0
    n_lines = np.bincount(codes[ok], minlength=n)

    if C.CUSTOMER_ID in purchases.columns:
        cust, cmap = encode_ids(purchases[C.CUSTOMER_ID])
        both = ok & (cust >= 0)
        pairs = sp.csr_matrix(
            (np.ones(int(both.sum()), dtype=np.int32), (codes[both], cust[both])),
            shape=(n, len(cmap)),
        )
        pairs.sum_duplicates()
        n_customers = np.diff(pairs.indptr)
    else:
        n_customers = np.zeros(n, dtype=np.int64)

    price = np.full(n, np.nan)
    if C.PRICE in purchases.columns:
        p = pd.to_numeric(purchases[C.PRICE], errors="coerce").to_numpy(np.float64)
        good = ok & (p > 0)
        med = pd.Series(p[good]).groupby(codes[good]).median()
        price[med.index.to_numpy()] = med.to_numpy()

    category = (_most_frequent(codes, purchases[C.CATEGORY], n)
                if C.CATEGORY in purchases.columns else np.full(n, None, dtype=object))
    name = (_most_frequent(codes, purchases[C.ITEM_NAME], n)
            if C.ITEM_NAME in purchases.columns else np.full(n, None, dtype=object))
    tiers = price_tiers(price, category, n_tiers)
    return pd.DataFrame({
        C.ITEM_ID: items.ids,
        C.CATEGORY: category,
        C.PRICE: price,
        C.PRICE_TIER: tiers,
        C.ITEM_NAME: name,
        "n_customers": n_customers.astype(np.int64),
        "n_lines": n_lines.astype(np.int64),
    })
