"""Simulated shoppers replayed from a held-out period of real purchase history.

Pure functions (DataFrames in, DataFrames out):

* :func:`plan_visits` picks the shoppers: customers who bought in the last
  ``holdout_days`` days. Each shopper visits the shop at the time of one of their
  held-out baskets (chosen at random, seeded): that is the *visit time*.
* :func:`attribute` scores a visit once the service has answered it: a *conversion* is a
  recommended item the shopper really bought at or after the visit and before
  ``visit + window``; its revenue is the real line value (``price * quantity``). A
  purchase line is credited to one visit only (the earliest that recommended it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import columns as C
from features.errors import PatronError

__all__ = ["ShopperPlan", "plan_visits", "attribute", "coerce_ids"]


@dataclass(frozen=True)
class ShopperPlan:
    """Visits to replay (``visit_id, customer_id, visit_time``, in time order) and the
    held-out purchases their outcomes are judged against."""

    visits: pd.DataFrame
    heldout: pd.DataFrame
    cutoff: pd.Timestamp
    description: dict


def plan_visits(
    purchases: pd.DataFrame,
    holdout_days: int = 28,
    max_visits: int | None = None,
    seed: int = 0,
    window_days: float | None = None,
) -> ShopperPlan:
    """One visit per held-out shopper (random sample of ``max_visits`` of them), in time order.

    With ``window_days``, visits are drawn only from baskets early enough that the whole
    attribution window lies inside the data (later shoppers are counted, not visited).
    """
    missing = [c for c in C.REQUIRED if c not in purchases.columns]
    if missing:
        raise PatronError(f"purchases: missing column(s) {missing}; have {list(purchases.columns)}")
    if len(purchases) == 0:
        raise PatronError("purchases: no rows")
    if holdout_days <= 0:
        raise PatronError(f"holdout_days must be positive, got {holdout_days}")
    ts = purchases[C.TIMESTAMP]
    cutoff = ts.max().normalize() + pd.Timedelta(days=1) - pd.Timedelta(days=int(holdout_days))
    if cutoff <= ts.min():
        raise PatronError(
            f"a {holdout_days}-day held-out period covers all the data "
            f"({ts.min().date()} .. {ts.max().date()})"
        )
    held = purchases.loc[(ts >= cutoff).to_numpy()].reset_index(drop=True)
    qty = held[C.QUANTITY].to_numpy(np.float64) if C.QUANTITY in held else np.ones(len(held))
    price = held[C.PRICE].to_numpy(np.float64) if C.PRICE in held else np.full(len(held), np.nan)
    held = held.assign(line_id=np.arange(len(held)), spend=price * np.where(np.isnan(qty), 1.0, qty))

    # a basket = order_id where present, else the purchase timestamp itself
    bkey = C.ORDER_ID if C.ORDER_ID in held and held[C.ORDER_ID].notna().all() else C.TIMESTAMP
    baskets = held.groupby([C.CUSTOMER_ID, bkey], sort=False)[C.TIMESTAMP].min().reset_index()
    n_all = int(baskets[C.CUSTOMER_ID].nunique())
    if window_days is not None:
        baskets = baskets[baskets[C.TIMESTAMP] <= ts.max() - pd.Timedelta(days=float(window_days))]
    rng = np.random.default_rng(seed)
    baskets = baskets.assign(_r=rng.random(len(baskets)))
    pick = baskets.sort_values("_r", kind="stable").drop_duplicates(C.CUSTOMER_ID)
    n_shoppers = len(pick)
    if max_visits is not None and max_visits < len(pick):
        pick = pick.iloc[rng.permutation(len(pick))[: int(max_visits)]]
    visits = (
        pick[[C.CUSTOMER_ID, C.TIMESTAMP]]
        .rename(columns={C.TIMESTAMP: "visit_time"})
        .sort_values(["visit_time", C.CUSTOMER_ID], kind="stable")
        .reset_index(drop=True)
    )
    visits.insert(0, "visit_id", np.arange(len(visits)))
    desc = {
        "cutoff": str(cutoff),
        "holdout_days": int(holdout_days),
        "heldout_rows": int(len(held)),
        "heldout_shoppers": int(n_all),
        "shoppers_without_full_window": int(n_all - n_shoppers),
        "visits": int(len(visits)),
        "revenue_available": bool(np.isfinite(held["spend"]).any()),
    }
    return ShopperPlan(visits, held, cutoff, desc)


def coerce_ids(values: pd.Series, like: pd.Series) -> pd.Series:
    """Cast ids from JSON (str or int) to the dtype of ``like`` (int64 ids stay int64)."""
    if pd.api.types.is_integer_dtype(like.dtype):
        return pd.to_numeric(values.astype(str), errors="coerce").astype("Int64")
    return values.astype(str)


def attribute(
    visits: pd.DataFrame, heldout: pd.DataFrame, window_days: float = 7.0
) -> pd.DataFrame:
    """Outcome per visit: ``converted_items`` (list), ``n_converted``, ``converted`` (0/1),
    ``revenue``. ``visits`` needs ``visit_id, customer_id, visit_time, items`` (the
    recommended item ids as the service returned them)."""
    window = pd.Timedelta(days=float(window_days))
    rec = visits[["visit_id", C.CUSTOMER_ID, "visit_time", "items"]].explode("items")
    rec = rec.dropna(subset=["items"]).rename(columns={"items": C.ITEM_ID})
    held = heldout[[C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, "spend", "line_id"]]
    rec[C.ITEM_ID] = coerce_ids(rec[C.ITEM_ID], held[C.ITEM_ID])
    rec[C.CUSTOMER_ID] = rec[C.CUSTOMER_ID].astype(held[C.CUSTOMER_ID].dtype)
    if pd.api.types.is_integer_dtype(held[C.ITEM_ID].dtype):
        held = held.assign(**{C.ITEM_ID: held[C.ITEM_ID].astype("Int64")})
    hit = rec.merge(held, on=[C.CUSTOMER_ID, C.ITEM_ID], how="inner")
    t = hit[C.TIMESTAMP]
    hit = hit[(t >= hit["visit_time"]) & (t < hit["visit_time"] + window)]
    hit = hit.sort_values(["visit_time", "visit_id"], kind="stable").drop_duplicates("line_id")
    revenue = hit.groupby("visit_id")["spend"].sum()
    first = hit.sort_values(C.ITEM_ID, kind="stable").drop_duplicates(["visit_id", C.ITEM_ID])
    per = first.assign(**{C.ITEM_ID: first[C.ITEM_ID].astype(str)}).groupby("visit_id")[C.ITEM_ID]
    per = pd.DataFrame({"converted_items": per.agg(list), "revenue": revenue})
    out = visits[["visit_id"]].merge(per, left_on="visit_id", right_index=True, how="left")
    items = out["converted_items"]
    out["converted_items"] = [x if isinstance(x, list) else [] for x in items]
    out["n_converted"] = out["converted_items"].str.len().astype(np.int64)
    out["converted"] = (out["n_converted"] > 0).astype(np.int64)
    out["revenue"] = out["revenue"].fillna(0.0).astype(np.float64)
    if not np.isfinite(heldout["spend"].to_numpy(np.float64)).any():
        out["revenue"] = np.nan  # no prices: revenue unknown, not zero
    return out.set_index(visits.index)[["converted_items", "n_converted", "converted", "revenue"]]
