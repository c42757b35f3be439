"""Validate and clean a purchase log: every dropped row is counted under one reason.

:func:`clean_purchases` takes a raw log in canonical columns (see :mod:`features.schema`)
and returns a :class:`CleanResult`: the clean purchases, the rejected (invalid) rows and a
JSON-able report. Each row gets exactly one reason, the first that applies in this order::

    invalid (rejects):  bad_timestamp, missing_item_id, missing_customer_id, bad_quantity, bad_price
    cleaning rules:     cancellation, return, zero_quantity, guest, non_product,
                        excluded_category, excluded_department, nonpositive_price, duplicate

so ``rows_in == rows_kept + sum(dropped.values())`` always holds. Invalid rows go to the
rejects table (``strict=True`` raises :class:`~features.errors.ValidationError` instead);
rows removed by a cleaning rule are only counted, with examples. Row numbers are 1-based
data rows as in the source file (the header is not counted).

Exact duplicates are found by hashing each row to one uint64
(:func:`pandas.util.hash_pandas_object`), factorizing the hashes and then confirming every
candidate against its first occurrence column by column, so a hash collision can never drop
a row; this is far cheaper than ``DataFrame.drop_duplicates`` over every column.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features import columns as C
from features.errors import SchemaError, ValidationError
from features.schema import EXTRA_COLUMNS, check_columns

__all__ = [
    "CleanConfig",
    "CleanResult",
    "INVALID_REASONS",
    "RULE_REASONS",
    "REASONS",
    "clean_purchases",
    "merge_config",
    "normalize_ids",
]

INVALID_REASONS = (
    "bad_timestamp",
    "missing_item_id",
    "missing_customer_id",
    "bad_quantity",
    "bad_price",
)
RULE_REASONS = (
    "cancellation",
    "return",
    "zero_quantity",
    "guest",
    "non_product",
    "excluded_category",
    "excluded_department",
    "nonpositive_price",
    "duplicate",
)
REASONS = INVALID_REASONS + RULE_REASONS
_CODE = {r: i + 1 for i, r in enumerate(REASONS)}  # 0 = kept
_COLUMN_OF = {
    "bad_timestamp": C.TIMESTAMP,
    "missing_item_id": C.ITEM_ID,
    "missing_customer_id": C.CUSTOMER_ID,
    "bad_quantity": C.QUANTITY,
    "bad_price": C.PRICE,
    "cancellation": C.ORDER_ID,
    "return": C.QUANTITY,
    "zero_quantity": C.QUANTITY,
    "guest": C.CUSTOMER_ID,
    "non_product": C.ITEM_ID,
    "excluded_category": C.CATEGORY,
    "excluded_department": "department",
    "nonpositive_price": C.PRICE,
    "duplicate": None,
}
_MESSAGE = {
    "bad_timestamp": "cannot parse timestamp",
    "missing_item_id": "missing item id",
    "missing_customer_id": "missing customer id",
    "bad_quantity": "quantity is not a number",
    "bad_price": "price is not a number",
}
N_EXAMPLES = 5


class CleanConfig(BaseModel):
    """Cleaning rules; each one is counted in the report under its reason."""

    model_config = ConfigDict(extra="forbid")

    drop_cancellations: bool = True
    """Drop lines whose order id starts with one of ``cancel_prefixes`` (reason ``cancellation``)."""
    cancel_prefixes: list[str] = Field(default_factory=list)
    """Order-id prefixes that mark a cancellation (Online Retail: ``["C"]``)."""
    drop_returns: bool = True
    """Drop lines with a negative quantity (reason ``return``)."""
    drop_zero_quantity: bool = True
    """Drop lines with quantity 0 (reason ``zero_quantity``)."""
    drop_guests: bool = True
    """Drop lines without a customer id (reason ``guest``); if False they are invalid rows."""
    drop_non_products: bool = True
    """Drop non-product item codes (postage, fees, vouchers; reason ``non_product``)."""
    non_product_codes: list[str] = Field(default_factory=list)
    """Exact item ids that are not products (compared as strings)."""
    non_product_pattern: str | None = None
    """Regex (``re.fullmatch``) for item ids that are not products, e.g. ``gift_\\d{4}_\\d+``."""
    exclude_categories: list[str] = Field(default_factory=list)
    """Category values whose lines are dropped (reason ``excluded_category``)."""
    exclude_departments: list[str] = Field(default_factory=list)
    """Department values whose lines are dropped (reason ``excluded_department``)."""
    drop_nonpositive_price: bool = True
    """Drop lines whose unit price is <= 0 where a price is given (reason ``nonpositive_price``)."""
    drop_duplicates: bool = True
    """Drop exact duplicate lines after the first (reason ``duplicate``)."""
    day_level: bool = False
    """Truncate timestamps to the day (Complete Journey's seconds are random)."""

    @field_validator("non_product_pattern")
    @classmethod
    def _valid_regex(cls, v: str | None) -> str | None:
        if v:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regex: {exc}") from exc
        return v or None


def merge_config(base: CleanConfig, override: CleanConfig | None) -> CleanConfig:
    """``base`` (a source's defaults) updated with the fields ``override`` set explicitly."""
    if override is None:
        return base
    return base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


@dataclass
class CleanResult:
    """Clean purchases, invalid rows (``row``, ``reason``, ``column``, ``value`` + raw
    columns as text) and the report (see :func:`clean_purchases`)."""

    purchases: pd.DataFrame
    rejects: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- parsing


def _missing_text(s: pd.Series) -> np.ndarray:
    """NaN/None or an empty/blank string."""
    miss = s.isna().to_numpy()
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        try:
            blank = s.str.strip().eq("")
        except AttributeError:  # no strings at all
            return miss
        miss |= blank.fillna(False).to_numpy(dtype=bool)
    return miss


def _id_missing(s: pd.Series) -> np.ndarray:
    if s.dtype.kind in "iub":
        return np.zeros(len(s), dtype=bool)
    if s.dtype.kind == "f":
        return ~np.isfinite(s.to_numpy())
    return _missing_text(s)


def _parse_number(s: pd.Series, allow_missing: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a mask of invalid entries (unparseable or infinite; missing too
    unless ``allow_missing``)."""
    if s.dtype.kind in "iufb":
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(vals) if allow_missing else ~np.isfinite(vals)
        return vals, bad
    vals = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(vals)
    if allow_missing:
        bad &= ~(np.isnan(vals) & _missing_text(s))
    return vals, bad


def _parse_timestamp(s: pd.Series) -> np.ndarray:
    """datetime64[ns] (naive, UTC for aware input); NaT where missing or unparseable.
    Numbers are read as unix seconds."""
    dt = s.dtype
    if isinstance(dt, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if dt.kind == "M":
        return s.to_numpy().astype("datetime64[ns]", copy=False)
    if dt.kind in "iuf":
        return pd.to_datetime(s, unit="s", errors="coerce").to_numpy(dtype="datetime64[ns]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pd.to_datetime(s, errors="coerce", utc=True)
        bad = out.isna().to_numpy() & ~_missing_text(s)
        if bad.any():  # a second chance for rows in another format than the first row's
            retry = pd.to_datetime(s[bad], errors="coerce", utc=True, format="mixed")
            out = out.copy()
            out[bad] = retry
    return out.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def normalize_ids(s: pd.Series) -> pd.Series:
    """Ids in their natural type: int64 where every id is a whole number, else str."""
    if s.dtype.kind in "iu":
        return s.astype(np.int64, copy=False)
    if s.dtype.kind == "b":
        return s.astype(np.int64)
    if s.dtype.kind == "f":
        v = s.to_numpy()
        if len(v) == 0 or (np.all(v == np.round(v)) and np.abs(v).max() < 2**62):
            return pd.Series(v.astype(np.int64), index=s.index, name=s.name)
        return s.map(repr).astype(object)
    num = pd.to_numeric(s, errors="coerce")
    if len(s) and num.notna().all():
        v = num.to_numpy(dtype=np.float64)
        if np.all(v == np.round(v)) and np.abs(v).max() < 2**53:
            return pd.Series(v.astype(np.int64), index=s.index, name=s.name)
    return s.astype(str).astype(object)


# ----------------------------------------------------------------------------- cleaning


def _duplicates(frame: pd.DataFrame, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows that repeat an earlier row exactly: (mask, index of the first occurrence)."""
    n = len(frame)
    first_of = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=bool), first_of
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    codes, _ = pd.factorize(h)
    # factorize numbers hashes in order of first appearance: a new code is a first occurrence
    running = np.maximum.accumulate(codes)
    is_first = np.empty(n, dtype=bool)
    is_first[0] = True
    is_first[1:] = codes[1:] > running[:-1]
    cand = np.flatnonzero(~is_first & candidates)
    if len(cand) == 0:
        return np.zeros(n, dtype=bool), first_of
    firsts = np.flatnonzero(is_first)[codes[cand]]
    same = np.ones(len(cand), dtype=bool)
    for col in frame.columns:  # confirm: a hash collision must never drop a row
        v = frame[col].to_numpy()
        a, b = v[cand], v[firsts]
        eq = a == b
        both_na = pd.isna(a) & pd.isna(b)
        same &= np.asarray(eq | both_na, dtype=bool)
    dup = np.zeros(n, dtype=bool)
    dup[cand[same]] = True
    first_of[cand[same]] = firsts[same]
    return dup, first_of


def _as_text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, pd.Timestamp | np.datetime64):
        return str(pd.Timestamp(v))
    return v if isinstance(v, int | float | str | bool) else str(v)


def clean_purchases(
    raw: pd.DataFrame,
    config: CleanConfig | None = None,
    strict: bool = False,
    source: str = "input",
) -> CleanResult:
    """Validate and clean ``raw`` (canonical columns; others ignored except ``department``).

    Returns a :class:`CleanResult`. With ``strict=True`` any invalid row raises
    :class:`ValidationError` naming ``source``, the row, the column and the value.
    Raises :class:`SchemaError` when a required column is missing.
    """
    cfg = config or CleanConfig()
    check_columns(raw, source)
    cols = [c for c in (*C.ALL, *EXTRA_COLUMNS) if c in raw.columns]
    raw = raw[cols]
    n = len(raw)
    code = np.zeros(n, dtype=np.int8)

    def mark(reason: str, mask: np.ndarray) -> None:
        np.putmask(code, (code == 0) & mask, _CODE[reason])

    # --- parse + validate
    ts = _parse_timestamp(raw[C.TIMESTAMP])
    mark("bad_timestamp", np.isnat(ts))
    mark("missing_item_id", _id_missing(raw[C.ITEM_ID]))
    cust_missing = _id_missing(raw[C.CUSTOMER_ID])
    if not cfg.drop_guests:
        mark("missing_customer_id", cust_missing)
    qty = price = None
    if C.QUANTITY in raw.columns:
        qty, bad = _parse_number(raw[C.QUANTITY], allow_missing=False)
        mark("bad_quantity", bad)
    if C.PRICE in raw.columns:
        price, bad = _parse_number(raw[C.PRICE], allow_missing=True)
        mark("bad_price", bad)

    n_invalid = int(np.count_nonzero(code))
    if strict and n_invalid:
        first = int(np.flatnonzero(code)[0])
        reason = REASONS[code[first] - 1]
        col = _COLUMN_OF[reason]
        counts = np.bincount(code, minlength=len(REASONS) + 1)
        summary = ", ".join(
            f"{counts[_CODE[r]]} {r}" for r in INVALID_REASONS if counts[_CODE[r]]
        )
        raise ValidationError(
            f"{source}: row {first + 1}, column {col!r}: {_MESSAGE[reason]}: "
            f"{_as_text(raw[col].iloc[first])!r} ({n_invalid} invalid rows: {summary})"
        )

    # --- cleaning rules
    if C.ORDER_ID in raw.columns and cfg.drop_cancellations and cfg.cancel_prefixes:
        oid = raw[C.ORDER_ID]
        if oid.dtype == object or isinstance(oid.dtype, pd.StringDtype):
            starts = oid.astype(str).str.startswith(tuple(cfg.cancel_prefixes))
            mark("cancellation", starts.to_numpy(dtype=bool))
    if qty is not None:
        if cfg.drop_returns:
            mark("return", qty < 0)
        if cfg.drop_zero_quantity:
            mark("zero_quantity", qty == 0)
    if cfg.drop_guests:
        mark("guest", cust_missing)
    if cfg.drop_non_products and (cfg.non_product_codes or cfg.non_product_pattern):
        item = raw[C.ITEM_ID]
        is_text = item.dtype == object or isinstance(item.dtype, pd.StringDtype)
        if cfg.non_product_codes:
            codes = list(cfg.non_product_codes)
            if not is_text:  # numeric ids: only numeric codes can match
                codes = pd.to_numeric(pd.Series(codes), errors="coerce").dropna().tolist()
            mark("non_product", item.isin(codes).to_numpy())
            if is_text:  # ids that are numbers stored as text, e.g. "123" vs 123.0
                mark("non_product", item.astype(str).isin(cfg.non_product_codes).to_numpy())
        if cfg.non_product_pattern:
            rx = re.compile(cfg.non_product_pattern)
            uniq = pd.unique(item.dropna())
            hits = [u for u in uniq if rx.fullmatch(str(u))]
            if hits:
                mark("non_product", item.isin(hits).to_numpy())
    if cfg.exclude_categories and C.CATEGORY in raw.columns:
        mark("excluded_category", raw[C.CATEGORY].isin(cfg.exclude_categories).to_numpy())
    if cfg.exclude_departments and "department" in raw.columns:
        mark("excluded_department", raw["department"].isin(cfg.exclude_departments).to_numpy())
    if price is not None and cfg.drop_nonpositive_price:
        with np.errstate(invalid="ignore"):
            mark("nonpositive_price", price <= 0)
    first_of = None
    if cfg.drop_duplicates:
        dup, first_of = _duplicates(raw, code == 0)
        mark("duplicate", dup)

    # --- outputs
    keep = code == 0
    out: dict[str, Any] = {}
    out[C.CUSTOMER_ID] = normalize_ids(raw[C.CUSTOMER_ID][keep]).to_numpy()
    out[C.ITEM_ID] = normalize_ids(raw[C.ITEM_ID][keep]).to_numpy()
    t = ts[keep]
    if cfg.day_level:
        t = t.astype("datetime64[D]").astype("datetime64[ns]")
    out[C.TIMESTAMP] = t
    if qty is not None:
        out[C.QUANTITY] = qty[keep]
    if price is not None:
        out[C.PRICE] = price[keep]
    if C.ORDER_ID in raw.columns:
        oid = raw[C.ORDER_ID][keep]
        out[C.ORDER_ID] = normalize_ids(oid).to_numpy() if oid.notna().all() else oid.to_numpy()
    for col in (C.CATEGORY, C.ITEM_NAME, *EXTRA_COLUMNS):
        if col in raw.columns:
            v = raw[col][keep]
            if not (v.dtype == object):
                v = v.astype(object).where(v.notna(), None)
            out[col] = v.to_numpy()
    purchases = pd.DataFrame(out)

    counts = np.bincount(code, minlength=len(REASONS) + 1)
    rejects = _rejects(raw, code, n_invalid)
    report = _report(raw, code, counts, cfg, source, purchases, first_of)
    return CleanResult(purchases=purchases, rejects=rejects, report=report)


def _rejects(raw: pd.DataFrame, code: np.ndarray, n_invalid: int) -> pd.DataFrame:
    invalid_codes = [_CODE[r] for r in INVALID_REASONS]
    idx = np.flatnonzero(np.isin(code, invalid_codes)) if n_invalid else np.zeros(0, np.int64)
    reasons = np.array(REASONS, dtype=object)[code[idx] - 1] if len(idx) else np.array([], object)
    cols = np.array([_COLUMN_OF[r] for r in reasons], dtype=object)
    values = [
        _as_text(raw[c].iloc[i]) for c, i in zip(cols, idx, strict=True)
    ]
    rej = pd.DataFrame(
        {
            "row": (idx + 1).astype(np.int64),
            "reason": reasons.astype(object),
            "column": cols,
            "value": pd.array([None if v is None else str(v) for v in values], dtype="string"),
        }
    )
    sub = raw.iloc[idx]
    for c in raw.columns:
        rej[f"raw_{c}"] = pd.array(
            [None if pd.isna(v) else str(v) for v in sub[c].tolist()], dtype="string"
        )
    return rej


def _report(
    raw: pd.DataFrame,
    code: np.ndarray,
    counts: np.ndarray,
    cfg: CleanConfig,
    source: str,
    purchases: pd.DataFrame,
    first_of: np.ndarray | None,
) -> dict[str, Any]:
    dropped = {r: int(counts[_CODE[r]]) for r in REASONS}
    examples: dict[str, list[dict[str, Any]]] = {}
    for r in REASONS:
        if not dropped[r]:
            continue
        idx = np.flatnonzero(code == _CODE[r])[:N_EXAMPLES]
        col = _COLUMN_OF[r]
        ex = []
        for i in idx:
            if col is None:  # duplicate
                value = f"duplicate of row {int(first_of[i]) + 1}" if first_of is not None else None
            else:
                value = _as_text(raw[col].iloc[i])
            ex.append({"row": int(i) + 1, "column": col, "value": value})
        examples[r] = ex
    ts = purchases[C.TIMESTAMP]
    report: dict[str, Any] = {
        "source": source,
        "rows_in": int(len(raw)),
        "rows_kept": int(counts[0]),
        "rows_rejected": int(sum(dropped[r] for r in INVALID_REASONS)),
        "dropped": dropped,
        "invalid_reasons": list(INVALID_REASONS),
        "examples": examples,
        "customers": int(purchases[C.CUSTOMER_ID].nunique()),
        "items": int(purchases[C.ITEM_ID].nunique()),
        "orders": int(purchases[C.ORDER_ID].nunique()) if C.ORDER_ID in purchases else None,
        "time_range": [str(ts.min()), str(ts.max())] if len(ts) else None,
        "columns": list(purchases.columns),
        "config": cfg.model_dump(),
    }
    if report["rows_in"] != report["rows_kept"] + sum(dropped.values()):  # pragma: no cover
        raise SchemaError(f"{source}: row accounting broken (internal error)")
    return report
