"""Win-back lists: dozing / half-asleep customers ranked by past value, with what to offer each.

The offer is the customer's own favourite items (most purchase days, then most spend) and,
when a recommender's top-N is passed in (a DataFrame ``customer_id, item_id`` with optional
``rank`` or ``score``), its best items that are not already among the favourites. ``features``
does not train models: the caller (e.g. ``patron segments --recs``) supplies the recommendations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import columns as C
from features.customers.nes import NES_STAGE
from features.customers.prep import DAY
from features.customers.rfm import MONETARY
from features.errors import SchemaError

WINBACK_RANK, OFFER_RANK, SOURCE = "winback_rank", "offer_rank", "source"
FAVOURITE_ITEMS, RECOMMENDED_ITEMS = "favourite_items", "recommended_items"


def favourite_items(lines: pd.DataFrame, customers: pd.Index, n: int = 3) -> pd.DataFrame:
    """Top ``n`` items per customer in ``customers`` by purchase days, then spend."""
    sub = lines[lines[C.CUSTOMER_ID].isin(customers)]
    fav = sub.groupby([C.CUSTOMER_ID, C.ITEM_ID], sort=False, observed=True).agg(
        days=(DAY, "nunique"), spend=(C.SPEND, "sum")
    ).reset_index()
    fav = fav.sort_values([C.CUSTOMER_ID, "days", "spend"], ascending=[True, False, False],
                          kind="stable")
    fav[OFFER_RANK] = fav.groupby(C.CUSTOMER_ID, sort=False).cumcount() + 1
    fav = fav[fav[OFFER_RANK] <= n]
    fav[SOURCE] = "favourite"
    return fav[[C.CUSTOMER_ID, C.ITEM_ID, OFFER_RANK, SOURCE]].reset_index(drop=True)


def top_recommendations(recs: pd.DataFrame, customers: pd.Index, exclude: pd.DataFrame,
                        n: int = 5) -> pd.DataFrame:
    """Best ``n`` recommended items per customer, skipping the (customer, item) pairs in ``exclude``."""
    missing = [c for c in (C.CUSTOMER_ID, C.ITEM_ID) if c not in recs.columns]
    if missing:
        raise SchemaError(f"recommendations lack column(s) {', '.join(missing)}")
    r = recs[recs[C.CUSTOMER_ID].isin(customers)].copy()
    if C.RANK in r.columns:
        r = r.sort_values([C.CUSTOMER_ID, C.RANK], kind="stable")
    elif C.SCORE in r.columns:
        r = r.sort_values([C.CUSTOMER_ID, C.SCORE], ascending=[True, False], kind="stable")
    else:
        r = r.sort_values(C.CUSTOMER_ID, kind="stable")  # keep the given order per customer
    seen = pd.MultiIndex.from_frame(exclude[[C.CUSTOMER_ID, C.ITEM_ID]])
    r = r[~pd.MultiIndex.from_frame(r[[C.CUSTOMER_ID, C.ITEM_ID]]).isin(seen)]
    r = r.drop_duplicates([C.CUSTOMER_ID, C.ITEM_ID])
    r[OFFER_RANK] = r.groupby(C.CUSTOMER_ID, sort=False).cumcount() + 1
    r = r[r[OFFER_RANK] <= n]
    r[SOURCE] = "recommended"
    return r[[C.CUSTOMER_ID, C.ITEM_ID, OFFER_RANK, SOURCE]].reset_index(drop=True)


def _joined(offers: pd.DataFrame, index: pd.Index) -> pd.Series:
    if offers.empty:
        return pd.Series("", index=index)
    s = offers.assign(i=offers[C.ITEM_ID].astype(str)).groupby(C.CUSTOMER_ID, sort=False)["i"]
    return s.agg("; ".join).reindex(index, fill_value="")


def winback_list(
    customers: pd.DataFrame,
    lines: pd.DataFrame,
    recs: pd.DataFrame | None = None,
    *,
    stages: tuple[str, ...] = ("S1", "S2"),
    n_favourites: int = 3,
    n_recommended: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(win-back list, offers) for customers in ``stages``, most valuable (monetary) first.

    ``customers`` is the customer table (indexed by customer_id, with ``nes_stage`` and
    ``monetary``); ``lines`` the prepared purchase lines (:func:`features.customers.prep.prepare`).
    The list keeps the customer's table columns plus winback_rank, favourite_items and
    recommended_items ("; "-joined ids); offers is long: customer_id, item_id, offer_rank, source.
    """
    sel = customers[customers[NES_STAGE].isin(stages)]
    sel = sel.sort_values(MONETARY, ascending=False, kind="stable").copy()
    sel.insert(0, WINBACK_RANK, np.arange(1, len(sel) + 1))
    fav = favourite_items(lines, sel.index, n_favourites)
    parts = [fav]
    if recs is not None:
        parts.append(top_recommendations(recs, sel.index, fav, n_recommended))
    offers = pd.concat(parts, ignore_index=True)
    sel[FAVOURITE_ITEMS] = _joined(fav, sel.index)
    sel[RECOMMENDED_ITEMS] = _joined(parts[1], sel.index) if recs is not None else ""
    order = pd.Series(np.arange(len(sel)), index=sel.index)
    offers = offers.assign(_o=offers[C.CUSTOMER_ID].map(order)).sort_values(
        ["_o", SOURCE, OFFER_RANK], ascending=[True, True, True], kind="stable"
    ).drop(columns="_o").reset_index(drop=True)
    return sel, offers


__all__ = [
    "WINBACK_RANK", "OFFER_RANK", "SOURCE", "FAVOURITE_ITEMS", "RECOMMENDED_ITEMS",
    "favourite_items", "top_recommendations", "winback_list",
]
