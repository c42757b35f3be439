"""Train/test splits of a clean purchase log, named for what they do.

Every split returns one frozen :class:`Split` of purchase DataFrames (canonical columns of
:mod:`features.columns`) plus a ``description`` dict that says how it was made and how
big each side is. Splits never look at models or matrices.

* :func:`split_global_time` - one cutoff for everyone: train = before, test = on/after.
  No information from the test period leaks into training.
* :func:`split_last_basket` - leave-last-basket-out per customer. Customers with a single
  basket stay wholly in train. Note: the cutoff differs per customer, so one customer's
  test basket can be older than another's training purchases.
* :func:`split_from_files` - bring your own train and test files.
* :func:`split_validation` - carve a validation period from the END of a training set
  (for tuning), so the real test period is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import columns as C
from features.errors import PatronError

__all__ = [
    "Split",
    "SplitError",
    "split_global_time",
    "split_last_basket",
    "split_from_files",
    "split_validation",
]


class SplitError(PatronError):
    """The data cannot be split as asked."""


@dataclass(frozen=True)
class Split:
    """Train and test purchases, and how they were made."""

    train: pd.DataFrame
    test: pd.DataFrame
    description: dict = field(default_factory=dict)


def _check(purchases: pd.DataFrame, what: str = "purchases") -> None:
    missing = [c for c in C.REQUIRED if c not in purchases.columns]
    if missing:
        raise SplitError(f"{what}: missing column(s) {missing}; have {list(purchases.columns)}")
    if len(purchases) == 0:
        raise SplitError(f"{what}: no rows to split")
    if not pd.api.types.is_datetime64_any_dtype(purchases[C.TIMESTAMP]):
        raise SplitError(f"{what}: column {C.TIMESTAMP!r} is not a datetime column")


def _describe(
    kind: str, train: pd.DataFrame, test: pd.DataFrame, min_customers: int,
    label: str = "test", **extra,
) -> dict:
    """Sizes of both sides; raises if the split leaves too little to evaluate."""
    if len(train) == 0:
        raise SplitError(f"{kind}: the training period is empty")
    if len(test) == 0:
        raise SplitError(f"{kind}: the {label} period is empty")
    test_customers = pd.unique(test[C.CUSTOMER_ID])
    known = np.isin(test_customers, pd.unique(train[C.CUSTOMER_ID]))
    n_known = int(known.sum())
    if n_known < min_customers:
        raise SplitError(
            f"{kind}: too few customers for the split: {n_known} customer(s) buy in both "
            f"the training and the {label} period (need at least {min_customers})"
        )

    def span(df: pd.DataFrame) -> list[str]:
        ts = df[C.TIMESTAMP]
        return [str(ts.min()), str(ts.max())]

    return {
        "kind": kind,
        **extra,
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        "train_customers": int(train[C.CUSTOMER_ID].nunique()),
        "test_customers": int(len(test_customers)),
        "test_customers_in_train": n_known,
        "train_span": span(train),
        "test_span": span(test),
    }


def split_global_time(
    purchases: pd.DataFrame,
    cutoff: str | pd.Timestamp | None = None,
    holdout_days: int | None = None,
    min_customers: int = 1,
) -> Split:
    """Train = purchases before ``cutoff``, test = purchases at or after it.

    Give exactly one of ``cutoff`` (a date/time) or ``holdout_days`` (hold out the last
    N calendar days: cutoff = midnight after the last purchase day minus N days).
    Raises :class:`SplitError` for a cutoff outside the data, an empty side, or fewer
    than ``min_customers`` test customers who also appear in train.
    """
    return _time_split(purchases, cutoff, holdout_days, min_customers, "global_time", "test")


def split_validation(
    train: pd.DataFrame, holdout_days: int, min_customers: int = 1
) -> Split:
    """Split a TRAINING set in time: its last ``holdout_days`` days become validation.

    The returned ``Split.test`` is the validation period; everything in it lies inside
    ``train``, so tuning on it never sees the real test period.
    """
    if holdout_days is None:
        raise SplitError("split_validation needs holdout_days")
    return _time_split(train, None, holdout_days, min_customers, "validation", "validation")


def _time_split(purchases, cutoff, holdout_days, min_customers, kind, label) -> Split:
    _check(purchases)
    if (cutoff is None) == (holdout_days is None):
        raise SplitError(f"{kind}: give exactly one of cutoff or holdout_days")
    ts = purchases[C.TIMESTAMP]
    first, last = ts.min(), ts.max()
    if holdout_days is not None:
        days = int(holdout_days)
        if days <= 0:
            raise SplitError(f"{kind}: holdout_days must be positive, got {holdout_days}")
        cut = last.normalize() + pd.Timedelta(days=1) - pd.Timedelta(days=days)
        if cut <= first:
            raise SplitError(
                f"{kind}: holdout of {days} days covers all the data "
                f"({first.date()} .. {last.date()}); the training period would be empty"
            )
    else:
        try:
            cut = pd.Timestamp(cutoff)
        except (ValueError, TypeError) as exc:
            raise SplitError(f"{kind}: cutoff {cutoff!r} is not a date ({exc})") from exc
        if cut.tzinfo is not None and ts.dt.tz is None:
            cut = cut.tz_localize(None)
        if not first < cut <= last:
            raise SplitError(
                f"{kind}: cutoff {cut} is outside the data ({first} .. {last}); "
                "it must leave purchases on both sides"
            )
    before = (ts < cut).to_numpy()
    train, test = purchases[before], purchases[~before]
    desc = _describe(
        kind, train, test, min_customers, cutoff=str(cut), holdout_days=holdout_days, label=label
    )
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), desc)


def split_last_basket(purchases: pd.DataFrame, min_customers: int = 1) -> Split:
    """Leave-last-basket-out: each customer's latest basket is test, the rest train.

    A basket is an ``order_id`` where the column exists and is filled, else a calendar
    day of the customer's purchases. The latest basket is the one with the latest
    timestamp (ties: the larger basket key). Customers with one basket stay in train.
    """
    _check(purchases)
    cust = purchases[C.CUSTOMER_ID].to_numpy()
    day = purchases[C.TIMESTAMP].dt.normalize()
    if C.ORDER_ID in purchases.columns and purchases[C.ORDER_ID].notna().all():
        basket = purchases[C.ORDER_ID].astype(str)
        basis = C.ORDER_ID
    else:
        basket = day.dt.strftime("%Y-%m-%d")
        basis = "day"
    frame = pd.DataFrame({"c": cust, "b": basket.to_numpy(), "t": purchases[C.TIMESTAMP].to_numpy()})
    per_basket = frame.groupby(["c", "b"], sort=False)["t"].max().reset_index()
    per_basket = per_basket.sort_values(["c", "t", "b"], kind="stable")
    n_baskets = per_basket.groupby("c", sort=False)["b"].transform("size")
    last = per_basket.drop_duplicates("c", keep="last")
    last = last[n_baskets.loc[last.index] >= 2]
    if len(last) < max(min_customers, 1):
        raise SplitError(
            f"last_basket: too few customers for the split: {len(last)} customer(s) have two "
            f"or more baskets (need at least {max(min_customers, 1)})"
        )
    key = pd.MultiIndex.from_arrays([frame["c"], frame["b"]])
    is_test = key.isin(pd.MultiIndex.from_arrays([last["c"], last["b"]]))
    train, test = purchases[~is_test], purchases[is_test]
    desc = _describe(
        "last_basket", train, test, min_customers, basket=basis,
        customers_with_one_basket=int(frame["c"].nunique() - len(last)),
    )
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), desc)


def split_from_files(
    train_path: str | Path, test_path: str | Path, min_customers: int = 1
) -> Split:
    """Bring-your-own split: train and test purchase files, each a clean ``purchases.parquet``
    (read as is) or a raw CSV/Parquet log (cleaned by :func:`features.ingest.load_dataset`)."""
    from features.ingest import load_dataset

    train, test = load_dataset(train_path), load_dataset(test_path)
    _check(train, str(train_path))
    _check(test, str(test_path))
    desc = _describe(
        "files", train, test, min_customers, train_path=str(train_path), test_path=str(test_path)
    )
    return Split(train, test, desc)
