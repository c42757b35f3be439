"""Business filters (categories, price range, allow/deny lists) as boolean item masks."""

from __future__ import annotations

import numpy as np

from serving.guard import short
from serving.schemas import Filters

__all__ = ["filter_mask"]


def filter_mask(
    filters: Filters | None,
    *,
    category_codes: np.ndarray,
    category_index: dict[str, int],
    prices: np.ndarray,
    lookup_items,
    warnings: list[str],
) -> np.ndarray | None:
    """Items allowed by ``filters`` as a bool mask, or ``None`` when nothing filters.

    ``category_codes`` (int, -1 = unknown) and ``prices`` (float, NaN = unknown) are aligned
    with the model's items; ``lookup_items(ids) -> (indices, unknown_ids)`` maps external
    ids. Problems the caller should know about (unknown categories or ids, no item table)
    are appended to ``warnings``; an item whose category or price is unknown fails a
    category or price filter.
    """
    if filters is None:
        return None
    n = len(category_codes)
    mask: np.ndarray | None = None

    def _and(m: np.ndarray) -> None:
        nonlocal mask
        mask = m if mask is None else (mask & m)

    for field, keep in (("categories_in", True), ("categories_out", False)):
        names = getattr(filters, field)
        if names is None:
            continue
        if not category_index:
            warnings.append(f"filters.{field} ignored: the model has no item categories")
            continue
        codes = [category_index[c] for c in names if c in category_index]
        unknown = [c for c in names if c not in category_index]
        if unknown:
            warnings.append(f"filters.{field}: unknown categories {[short(u) for u in unknown[:10]]}")
        hit = np.isin(category_codes, np.asarray(codes, dtype=category_codes.dtype))
        _and(hit if keep else ~hit)
    if filters.price_min is not None or filters.price_max is not None:
        if np.isnan(prices).all():
            warnings.append("price filters ignored: the model has no item prices")
        else:
            with np.errstate(invalid="ignore"):
                m = np.isfinite(prices)
                if filters.price_min is not None:
                    m &= prices >= filters.price_min
                if filters.price_max is not None:
                    m &= prices <= filters.price_max
            _and(m)
    if filters.allow_items is not None:
        idx, unknown = lookup_items(filters.allow_items)
        if unknown:
            warnings.append(f"filters.allow_items: unknown item ids ignored {[short(u) for u in unknown[:10]]}")
        m = np.zeros(n, dtype=bool)
        m[idx] = True
        _and(m)
    if filters.deny_items is not None:
        idx, unknown = lookup_items(filters.deny_items)
        m = np.ones(n, dtype=bool)
        m[idx] = False
        _and(m)
    return mask
