"""Shared preparation: check the purchase log, fix the reference date, derive day/order/spend."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features import columns as C
from features.errors import PatronError, SchemaError

DAY = "day"  # purchase date (midnight), day-level time
ORDER = "order"  # integer basket key: order_id, else customer-day


class CustomerDataWarning(UserWarning):
    """The data lacks something the analytics would like (e.g. prices); a fallback was used."""


def default_reference_date(purchases: pd.DataFrame) -> pd.Timestamp:
    """The day after the last purchase in ``purchases``."""
    _check(purchases)
    return pd.Timestamp(purchases[C.TIMESTAMP].max()).normalize() + pd.Timedelta(days=1)


def to_timestamp(value: object, name: str = "reference date") -> pd.Timestamp | None:
    """Parse a date given by the user (None stays None); PatronError naming ``name`` if bad."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise PatronError(f"{name} {value!r} is not a date (use YYYY-MM-DD)") from exc
    if ts is pd.NaT:
        raise PatronError(f"{name} {value!r} is not a date (use YYYY-MM-DD)")
    return ts.tz_localize(None) if ts.tzinfo is not None else ts


def _check(purchases: pd.DataFrame) -> None:
    if not isinstance(purchases, pd.DataFrame):
        raise TypeError(f"purchases must be a DataFrame, got {type(purchases).__name__}")
    missing = [c for c in C.REQUIRED if c not in purchases.columns]
    if missing:
        raise SchemaError(
            f"purchases lack column(s) {', '.join(missing)} (have: {', '.join(map(str, purchases.columns))})"
        )
    if len(purchases) == 0:
        raise PatronError("purchases are empty: no customer to analyse")
    if not pd.api.types.is_datetime64_any_dtype(purchases[C.TIMESTAMP]):
        raise SchemaError(
            f"column {C.TIMESTAMP} must be datetime64, got {purchases[C.TIMESTAMP].dtype}"
        )


def spend_of(purchases: pd.DataFrame, *, warn: bool = True) -> pd.Series:
    """Line spend = quantity x unit price; quantity alone (warned) when there are no prices.

    Missing quantity counts as 1; a missing price on a line counts as 0 spend.
    """
    qty = (
        purchases[C.QUANTITY].astype("float64").fillna(1.0)
        if C.QUANTITY in purchases.columns
        else pd.Series(1.0, index=purchases.index)
    )
    if C.PRICE in purchases.columns and purchases[C.PRICE].notna().any():
        return (qty * purchases[C.PRICE].astype("float64")).fillna(0.0).rename(C.SPEND)
    if warn:
        what = "quantity" if C.QUANTITY in purchases.columns else "the number of lines"
        warnings.warn(
            f"purchases have no {C.PRICE} column (or it is all empty): Monetary is {what}, not money",
            CustomerDataWarning,
            stacklevel=3,
        )
    return qty.rename(C.SPEND)


def has_prices(purchases: pd.DataFrame) -> bool:
    return C.PRICE in purchases.columns and bool(purchases[C.PRICE].notna().any())


def prepare(
    purchases: pd.DataFrame,
    reference_date: object = None,
    *,
    warn: bool = True,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Return (lines before the reference date with day/order/spend columns, reference date).

    The reference date defaults to the day after the last purchase; purchases on or after it
    are ignored. A reference date on or before the first purchase day is a PatronError.
    """
    _check(purchases)
    ref = to_timestamp(reference_date)
    first = pd.Timestamp(purchases[C.TIMESTAMP].min())
    if ref is None:
        ref = default_reference_date(purchases)
    if ref <= first.normalize():
        raise PatronError(
            f"reference date {ref.date()} is on or before the first purchase in the data "
            f"({first.date()}): nothing to analyse"
        )
    keep = purchases[C.TIMESTAMP] < ref
    cols = [c for c in (C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.CATEGORY) if c in purchases.columns]
    out = purchases.loc[keep, cols].copy()
    out[DAY] = out[C.TIMESTAMP].dt.normalize()
    out[C.SPEND] = spend_of(purchases.loc[keep], warn=warn).to_numpy()
    day_num = out[DAY].to_numpy().astype("datetime64[D]").astype(np.int64)
    cust_code = pd.factorize(out[C.CUSTOMER_ID])[0].astype(np.int64)
    span = int(day_num.max() - day_num.min()) + 1
    cd_codes = cust_code * span + (day_num - day_num.min())  # distinct per (customer, day)
    if C.ORDER_ID in purchases.columns and purchases[C.ORDER_ID].notna().any():
        codes = pd.factorize(purchases.loc[keep, C.ORDER_ID])[0].astype(np.int64)
        # lines without an order id fall back to the customer-day as their basket
        codes = np.where(codes < 0, codes.max() + 1 + cd_codes, codes)
    else:
        codes = cd_codes
    out[ORDER] = codes
    return out.reset_index(drop=True), ref


__all__ = [
    "DAY", "ORDER", "CustomerDataWarning", "default_reference_date", "to_timestamp",
    "spend_of", "has_prices", "prepare",
]
