"""Repurchase intervals per customer and item (or category) from each customer's own history.

A repeat is a purchase of the same item on a later distinct day; the gaps between a customer's
distinct purchase days of the item give their interval: the median gap once they have at least
``RepurchaseConfig.min_repeats`` gaps. With fewer, the item's population median is used: the
median over customers of each customer's median gap for that item (``interval_source`` is then
``"item"``; ``NaN`` / ``"none"`` when nobody bought the item twice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import columns as C
from features.customers.config import RepurchaseConfig
from features.customers.prep import DAY, prepare
from features.errors import SchemaError

PURCHASE_DAYS = "purchase_days"
REPEATS = "repeats"
FIRST_DAY, LAST_DAY = "first_day", "last_day"
OWN_INTERVAL, POPULATION_INTERVAL = "own_interval", "population_interval"
INTERVAL, INTERVAL_SOURCE = "interval", "interval_source"
GAP_MEAN, GAP_STD, GAP_CV = "gap_mean", "gap_std", "gap_cv"


def _group_median(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of ``values`` per group id in 0..n_groups-1 (NaN for empty groups), by sorting."""
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    twice = values * 2.0
    if np.array_equal(twice, np.round(twice)) and twice.min() >= 0:
        # day gaps (and medians of them) are multiples of 0.5: one integer sort is much faster
        width = int(twice.max()) + 1
        keys = np.sort(group.astype(np.int64) * width + twice.astype(np.int64))
        g, v = keys // width, (keys % width) / 2.0
    else:
        order = np.lexsort((values, group))
        v, g = values[order], group[order]
    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = (v[lo] + v[hi]) / 2.0
    return out


def repurchase_intervals(
    purchases: pd.DataFrame,
    key: str = C.ITEM_ID,
    config: RepurchaseConfig | None = None,
    reference_date: object = None,
    *,
    prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """One row per (customer, key) pair bought before the reference date.

    Columns: customer_id, ``key``, purchase_days, repeats, first_day, last_day, gap_mean,
    gap_std, gap_cv (std / mean of the gaps; NaN with fewer than two gaps), own_interval,
    population_interval, interval (own, else population), interval_source (own|item|none).
    Sorted by customer and key codes (first appearance order). Pure numpy over integer codes:
    distinct (pair, day) by sorting, gaps via ``np.diff``, per-pair sums via ``bincount``.
    """
    config = config or RepurchaseConfig()
    lines, _ = prepared if prepared is not None else prepare(purchases, reference_date, warn=False)
    if key not in lines.columns:
        raise SchemaError(f"purchases have no {key} column: no repurchase intervals by {key}")
    lines = lines[lines[key].notna()]
    cust, cust_ids = pd.factorize(lines[C.CUSTOMER_ID])
    kcode, key_ids = pd.factorize(lines[key])
    n_keys = max(len(key_ids), 1)
    day = lines[DAY].to_numpy().astype("datetime64[D]").astype(np.int64)
    d0 = int(day.min()) if len(day) else 0
    span = int(day.max()) - d0 + 1 if len(day) else 1
    pair_day = np.sort((cust.astype(np.int64) * n_keys + kcode) * span + (day - d0))
    if len(pair_day):  # distinct (sorting beats np.unique's hashing here)
        pair_day = pair_day[np.concatenate(([True], pair_day[1:] != pair_day[:-1]))]
    pair, day = pair_day // span, pair_day % span + d0  # sorted by pair, then day
    first = np.ones(len(pair), dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    group = np.cumsum(first) - 1
    n = int(group[-1]) + 1 if len(group) else 0
    gap = np.diff(day, prepend=day[:1]).astype(float)
    gap[first] = np.nan
    has_gap = ~first
    days_n = np.bincount(group, minlength=n)
    repeats = days_n - 1
    g_sum = np.bincount(group[has_gap], gap[has_gap], minlength=n)
    g_sq = np.bincount(group[has_gap], gap[has_gap] ** 2, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(repeats > 0, g_sum / repeats, np.nan)
        var = (g_sq - repeats * mean**2) / (repeats - 1)
    std = np.where(repeats >= 2, np.sqrt(np.clip(var, 0, None)), np.nan)
    median = _group_median(gap[has_gap], group[has_gap], n)
    starts = np.flatnonzero(first)
    ends = np.concatenate((starts[1:], [len(pair)])) - 1
    pair_u = pair[starts]
    key_of = (pair_u % n_keys).astype(np.int64)
    # population: median over customers (with >= 1 repeat) of their median gap, per key
    pop_by_key = _group_median(median[repeats >= 1], key_of[repeats >= 1], n_keys)
    population = pop_by_key[key_of]
    own = repeats >= config.min_repeats
    own_interval = np.where(own, median, np.nan)
    interval = np.where(own, median, population)
    out = pd.DataFrame(
        {
            C.CUSTOMER_ID: cust_ids.take(pair_u // n_keys),
            key: key_ids.take(key_of),
            PURCHASE_DAYS: days_n.astype(np.int64),
            REPEATS: repeats.astype(np.int64),
            FIRST_DAY: day[starts].astype("datetime64[D]").astype("datetime64[ns]"),
            LAST_DAY: day[ends].astype("datetime64[D]").astype("datetime64[ns]"),
            GAP_MEAN: mean,
            GAP_STD: std,
            GAP_CV: std / mean,
            OWN_INTERVAL: own_interval,
            POPULATION_INTERVAL: population,
            INTERVAL: interval,
            INTERVAL_SOURCE: np.select([own, ~np.isnan(population)], ["own", "item"], "none"),
        }
    )
    return out


__all__ = [
    "PURCHASE_DAYS", "REPEATS", "FIRST_DAY", "LAST_DAY", "OWN_INTERVAL", "POPULATION_INTERVAL",
    "INTERVAL", "INTERVAL_SOURCE", "GAP_MEAN", "GAP_STD", "GAP_CV",
    "repurchase_intervals",
]
