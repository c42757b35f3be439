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


def pair_gaps(lines: pd.DataFrame, key: str = C.ITEM_ID) -> pd.DataFrame:
    """Distinct (customer, key, day) rows sorted by pair and day with ``gap`` in days (NaN first).

    ``pair`` is an integer code of the (customer, key) pair.
    """
    if key not in lines.columns:
        raise SchemaError(f"purchases have no {key} column: no repurchase intervals by {key}")
    d = lines[[C.CUSTOMER_ID, key, DAY]]
    d = d[d[key].notna()].drop_duplicates()
    cust = pd.factorize(d[C.CUSTOMER_ID])[0].astype(np.int64)
    kcode, _ = pd.factorize(d[key])
    pair = cust * (int(kcode.max()) + 1) + kcode.astype(np.int64)
    day = d[DAY].to_numpy().astype("datetime64[D]").astype(np.int64)
    order = np.lexsort((day, pair))
    pair, day = pair[order], day[order]
    gap = np.diff(day, prepend=day[:1]).astype(float)
    first = np.ones(len(pair), dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    gap[first] = np.nan
    out = d.iloc[order].reset_index(drop=True)
    out["pair"] = pair
    out["gap"] = gap
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
    """
    config = config or RepurchaseConfig()
    lines, _ = prepared if prepared is not None else prepare(purchases, reference_date, warn=False)
    gaps = pair_gaps(lines, key)
    g = gaps.groupby("pair", sort=False)
    out = g.agg(
        **{
            C.CUSTOMER_ID: (C.CUSTOMER_ID, "first"),
            key: (key, "first"),
            PURCHASE_DAYS: (DAY, "size"),
            FIRST_DAY: (DAY, "min"),
            LAST_DAY: (DAY, "max"),
            REPEATS: ("gap", "count"),
            "median_gap": ("gap", "median"),
            GAP_MEAN: ("gap", "mean"),
            GAP_STD: ("gap", "std"),
        }
    ).reset_index(drop=True)
    out[GAP_STD] = out[GAP_STD].where(out[REPEATS] >= 2)
    out[GAP_CV] = out[GAP_STD] / out[GAP_MEAN]
    pop = out.loc[out[REPEATS] >= 1].groupby(key, observed=True)["median_gap"].median()
    out[POPULATION_INTERVAL] = out[key].map(pop).astype(float)
    own = out[REPEATS] >= config.min_repeats
    out[OWN_INTERVAL] = out["median_gap"].where(own)
    out[INTERVAL] = out[OWN_INTERVAL].fillna(out[POPULATION_INTERVAL])
    out[INTERVAL_SOURCE] = np.select(
        [own.to_numpy(), out[POPULATION_INTERVAL].notna().to_numpy()], ["own", "item"], "none"
    )
    out = out.drop(columns="median_gap")
    return out.sort_values([C.CUSTOMER_ID, key], kind="stable").reset_index(drop=True)


__all__ = [
    "PURCHASE_DAYS", "REPEATS", "FIRST_DAY", "LAST_DAY", "OWN_INTERVAL", "POPULATION_INTERVAL",
    "INTERVAL", "INTERVAL_SOURCE", "GAP_MEAN", "GAP_STD", "GAP_CV",
    "pair_gaps", "repurchase_intervals",
]
