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

Timestamps: datetimes as they are (time-zone aware ones converted to UTC, then naive),
numbers as unix seconds, text parsed (a second, mixed-format pass for values that do not
match the first value's format). Text columns are factorized once and parsed, checked and
typed on their distinct values only.

Exact duplicates (over every column, after parsing) are found without
``DataFrame.drop_duplicates``: one uint64 hash per row, one ``np.sort``, then every
candidate is confirmed column by column against its first occurrence, so a hash collision
can never drop a row (see :func:`_duplicates`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features import columns as C
from features.errors import SchemaError, ValidationError
from features.schema import EXTRA_COLUMNS, LINE_TOTAL, check_columns
from features.timestamps import (
    NAT,
    TimestampError,
    TimestampReading,
    _plausible,
    parse_numeric_timestamps,
    parse_timestamps,
)

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
    "implausible_timestamp",
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
    "implausible_timestamp": C.TIMESTAMP,
    "missing_item_id": C.ITEM_ID,
    "missing_customer_id": C.CUSTOMER_ID,
    "bad_quantity": C.QUANTITY,
    "bad_price": C.PRICE,  # (or line_total, when the unit price comes from it)
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
    "implausible_timestamp": "timestamp outside the plausible range (min_date .. now)",
    "missing_item_id": "missing item id",
    "missing_customer_id": "missing customer id",
    "bad_quantity": "quantity is not a number",
    "bad_price": "price is not a number",
}
N_EXAMPLES = 5


def _column_of(reason: str, raw: pd.DataFrame) -> str | None:
    """The column a reason is about (``line_total`` for a bad price read from it)."""
    col = _COLUMN_OF[reason]
    if col == C.PRICE and C.PRICE not in raw.columns and LINE_TOTAL in raw.columns:
        return LINE_TOTAL
    return col


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
    drop_suspected_non_products: bool = False
    """Drop the items the non-product detector suspects (postage, fees, vouchers: by name, a
    share of orders no product has, or zero/negative prices), reason ``non_product``. Off by
    default: they are reported with examples so you can decide, or list them in
    ``non_product_codes``."""
    drop_duplicates: bool = True
    """Drop exact duplicate lines after the first (reason ``duplicate``)."""
    day_level: bool = False
    """Truncate timestamps to the day (Complete Journey's seconds are random)."""
    date_format: str | None = None
    """strftime format of text timestamps (e.g. ``%d/%m/%Y %H:%M``); default: detected."""
    dayfirst: bool | None = None
    """Numeric dates such as ``01/02/2024`` are day-first (True) or month-first (False);
    default: decided from the values (a field > 12), an error when they cannot tell."""
    min_date: str = "1990-01-01"
    """Timestamps before this are implausible (reason ``implausible_timestamp``)."""
    max_future_days: int = Field(1, ge=0)
    """Timestamps more than this many days after now are implausible."""
    max_bad_timestamp_share: float = Field(0.5, ge=0, le=1)
    """More unreadable or implausible timestamps than this share of rows is an error (the
    column is read wrong), not rows to reject."""

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


def _is_text(s: pd.Series) -> bool:
    """Object, string, categorical or other non-numeric, non-datetime columns."""
    return s.dtype.kind not in "iufbmM"


def _exact_key(s: pd.Series) -> np.ndarray:
    """A numpy array whose equality is the column's equality (for duplicate detection)."""
    if isinstance(s.dtype, np.dtype):
        return s.to_numpy()
    return pd.factorize(s)[0]  # extension dtypes (nullable Int64, ...): exact codes


class _Distinct:
    """A text column factorized once: work on its distinct values, map back by code.

    Logs repeat their values (ids, invoices, timestamps), so string work on the distinct
    values instead of every row is what makes cleaning cheap.
    """

    def __init__(self, s: pd.Series) -> None:
        if isinstance(s.dtype, pd.CategoricalDtype):
            self.codes = s.cat.codes.to_numpy()
            self.uniques = np.asarray(s.cat.categories, dtype=object)
        else:
            codes, uniques = pd.factorize(s)
            self.codes, self.uniques = codes, np.asarray(uniques, dtype=object)

    def take(self, per_unique: np.ndarray, fill: Any, rows: np.ndarray | None = None) -> np.ndarray:
        """``per_unique[code]`` for each row (``fill`` for missing), optionally of ``rows`` only."""
        per_unique = np.asarray(per_unique)
        ext = np.concatenate([per_unique, np.asarray([fill], dtype=per_unique.dtype)])
        codes = self.codes if rows is None else self.codes[rows]
        return ext[codes]  # code -1 (missing) picks the appended fill

    def blank(self) -> np.ndarray:
        """Per distinct value: an empty or blank string."""
        return np.fromiter(
            (isinstance(u, str) and not u.strip() for u in self.uniques), bool, len(self.uniques)
        )

    def missing(self) -> np.ndarray:
        """Per row: missing (NaN/None) or blank."""
        return self.take(self.blank(), True)


def _numeric_unique(uniques: np.ndarray) -> np.ndarray:
    return pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _id_missing(s: pd.Series, d: _Distinct | None) -> np.ndarray:
    if d is not None:
        return d.missing()
    if s.dtype.kind == "f":
        return ~np.isfinite(s.to_numpy())
    return s.isna().to_numpy()


def _parse_number(
    s: pd.Series, d: _Distinct | None, allow_missing: bool
) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a mask of invalid entries (unparseable or infinite; missing too
    unless ``allow_missing``)."""
    if d is None:
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(vals) if allow_missing else ~np.isfinite(vals)
        return vals, bad
    u = _numeric_unique(d.uniques)
    bad_u = ~np.isfinite(u)
    if allow_missing:
        bad_u &= ~d.blank()
    return d.take(u, np.nan), d.take(bad_u, not allow_missing)


def _parse_timestamp(
    s: pd.Series, d: _Distinct | None, cfg: CleanConfig, source: str
) -> tuple[np.ndarray, np.ndarray, TimestampReading]:
    """``(datetime64[ns], implausible mask, reading)``: naive (UTC for aware input); NaT
    where missing, unreadable or implausible. Text is read by :mod:`features.timestamps`
    (an explicit or detected format), numbers in the unit their range shows."""
    dt = s.dtype
    col = f"{source}: column {C.TIMESTAMP!r}"
    if isinstance(dt, pd.DatetimeTZDtype) or dt.kind == "M":
        vals = (s.dt.tz_convert("UTC").dt.tz_localize(None) if isinstance(dt, pd.DatetimeTZDtype)
                else s).to_numpy().astype("datetime64[ns]", copy=False)
        out, implausible, reading = parse_timestamps(
            np.empty(0, object), min_date=cfg.min_date, max_future_days=cfg.max_future_days)
        bad = ~_plausible(vals, cfg.min_date, cfg.max_future_days)
        reading.source, reading.families, reading.implausible = "typed", {}, int(bad.sum())
        return np.where(bad, NAT, vals), bad, reading
    if d is None:
        vals, unit = parse_numeric_timestamps(s.to_numpy(dtype=np.float64, na_value=np.nan), col)
        bad = ~_plausible(vals, cfg.min_date, cfg.max_future_days)
        reading = TimestampReading(source="detected", families={"number": int(len(s))},
                                   unit=unit, implausible=int(bad.sum()))
        return np.where(bad, NAT, vals), bad, reading
    vals, implausible, reading = parse_timestamps(
        d.uniques, date_format=cfg.date_format, dayfirst=cfg.dayfirst, min_date=cfg.min_date,
        max_future_days=cfg.max_future_days, source=col)
    return d.take(vals, NAT), d.take(implausible, False), reading


def _id_text(u: Any) -> str:
    """A non-string id inside a text column as text (whole numbers without ``.0``)."""
    if isinstance(u, bool | np.bool_):
        return str(u)
    if isinstance(u, int | np.integer):
        return str(int(u))
    if isinstance(u, float | np.floating) and float(u).is_integer():
        return str(int(u))
    return str(u)


def _ids_from_distinct(d: _Distinct, rows: np.ndarray) -> np.ndarray:
    """Ids of ``rows`` (none missing) exactly as given: a text column stays text, so
    ``"007"`` stays ``"007"`` and never merges with ``"7"`` (readers type a column as
    integers only where that loses nothing, see :func:`features.adapters.read_table`)."""
    per_s = np.array([u if isinstance(u, str) else _id_text(u) for u in d.uniques], dtype=object)
    return d.take(per_s, None, rows)


def _whole(v: np.ndarray) -> np.ndarray | None:
    """``v`` (float) as int64 when every value is a whole number within int64, else None."""
    with np.errstate(invalid="ignore"):
        if len(v) and not (np.abs(v).max() < 2**62):
            return None
        iv = v.astype(np.int64)
    return iv if np.array_equal(iv, v) else None


def normalize_ids(s: pd.Series) -> pd.Series:
    """Ids in the type the source gave: integer and whole-number float columns as int64
    (floats that are not whole as their ``repr``), text exactly as given."""
    if s.dtype.kind in "iub":
        return s.astype(np.int64, copy=False)
    if s.dtype.kind == "f":
        v = s.to_numpy()
        iv = _whole(v)
        if iv is not None:
            return pd.Series(iv, index=s.index, name=s.name)
        return s.map(repr).astype(object)
    d = _Distinct(s)
    return pd.Series(_ids_from_distinct(d, np.arange(len(s))), index=s.index, name=s.name)


# ----------------------------------------------------------------------------- cleaning


_MULT = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray, tmp: np.ndarray) -> None:
    """splitmix64's finaliser, in place (``tmp``: scratch of the same shape)."""
    np.right_shift(x, np.uint64(30), out=tmp)
    x ^= tmp
    x *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(x, np.uint64(27), out=tmp)
    x ^= tmp
    x *= np.uint64(0x94D049BB133111EB)
    np.right_shift(x, np.uint64(31), out=tmp)
    x ^= tmp


def _row_hash(keys: dict[str, np.ndarray]) -> np.ndarray:
    """One uint64 per row over all key columns (numeric, 8 bytes or fewer each).

    ``h = (h * M + column)`` per column, then splitmix64's finaliser: a few in-place passes,
    no temporaries per column. Collisions only cost time: duplicates are confirmed exactly.
    """
    cols = list(keys.values())
    h = np.empty(len(cols[0]), dtype=np.uint64)
    tmp = np.empty_like(h)
    for i, v in enumerate(cols):
        if v.dtype.itemsize == 8:
            u = v.view(np.uint64)
        else:
            u = v.astype(np.int64).view(np.uint64)
        if i == 0:
            h[:] = u
        else:
            h *= _MULT
            h += u
    _mix(h, tmp)
    return h


def _same_rows(keys: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows ``a`` equal rows ``b`` in every key column (missing equals missing)."""
    same = np.ones(len(a), dtype=bool)
    for v in keys.values():
        x, y = v[a], v[b]
        eq = x == y
        if v.dtype.kind == "f":
            eq |= np.isnan(x) & np.isnan(y)
        elif v.dtype == object:
            eq |= pd.isna(x) & pd.isna(y)
        same &= eq
    return same


def _duplicates(
    keys: dict[str, np.ndarray], rows: np.ndarray, row_hash=_row_hash
) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``rows`` (ascending indices into ``keys``) repeat an earlier one of them.

    Returns ``(dup, first)``: row indices that are duplicates and the index of the first
    occurrence of each. Each row's 64-bit hash has its low bits replaced by the row's
    position, so ONE plain ``np.sort`` of uint64 (no argsort, no hash table) groups equal
    hashes with positions ascending inside a group: the group's first element is the first
    occurrence. Every candidate is then confirmed column by column against it, and the few
    groups holding a (truncated-)hash collision are resolved exactly with pandas, so the
    result is exact.
    """
    n = len(rows)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty
    h = np.asarray(row_hash(keys), dtype=np.uint64)
    key = h[rows] if n != len(h) else h.copy()
    del h
    bits = max(int(n - 1).bit_length(), 1)
    low = np.uint64((1 << bits) - 1)
    key &= ~low
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    pos = (key & low).astype(np.int64)
    key >>= np.uint64(bits)
    same_hash = np.empty(n, dtype=bool)
    same_hash[0] = False
    np.equal(key[1:], key[:-1], out=same_hash[1:])
    del key
    cand = np.flatnonzero(same_hash)
    if len(cand) == 0:
        return empty, empty
    starts = np.flatnonzero(~same_hash)  # sorted positions where a hash group begins
    group = np.searchsorted(starts, cand, side="right") - 1  # group number of each candidate
    a, b = rows[pos[cand]], rows[pos[starts[group]]]
    ok = _same_rows(keys, a, b)
    if ok.all():
        order = np.argsort(a)
        return a[order], b[order]
    # groups with a collision: dedupe all their rows at once, exactly
    bad = np.unique(group[~ok])
    fast = ~np.isin(group, bad)
    lo = starts[bad]
    nxt = np.minimum(bad + 1, len(starts) - 1)
    hi = np.where(bad + 1 < len(starts), starts[nxt], n)
    length = hi - lo
    offsets = np.repeat(lo - np.cumsum(np.append(0, length[:-1])), length)
    members = np.sort(rows[pos[np.arange(length.sum()) + offsets]])
    frame = pd.DataFrame({c: v[members] for c, v in keys.items()})
    gid = frame.groupby(list(frame.columns), dropna=False, sort=False).ngroup().to_numpy()
    firsts = pd.Series(members).groupby(gid).transform("min").to_numpy()
    slow = members != firsts
    dup = np.concatenate([a[ok & fast], members[slow]])
    first = np.concatenate([b[ok & fast], firsts[slow]])
    order = np.argsort(dup)
    return dup[order], first[order]


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
    if cols != list(raw.columns):
        raw = pd.DataFrame({c: raw[c] for c in cols}, copy=False)
    n = len(raw)
    code = np.zeros(n, dtype=np.int8)
    # text columns, factorized once and shared by every step below
    text = {c: _Distinct(raw[c]) for c in cols if _is_text(raw[c])}

    def mark(reason: str, mask: np.ndarray) -> None:
        np.putmask(code, (code == 0) & mask, _CODE[reason])

    # --- parse + validate
    ts, implausible, reading = _parse_timestamp(raw[C.TIMESTAMP], text.get(C.TIMESTAMP), cfg,
                                                source)
    ts_missing = _id_missing(raw[C.TIMESTAMP], text.get(C.TIMESTAMP))
    mark("implausible_timestamp", implausible)
    mark("bad_timestamp", np.isnat(ts))
    _check_timestamp_share(raw, code, ts_missing, cfg, source, reading)
    mark("missing_item_id", _id_missing(raw[C.ITEM_ID], text.get(C.ITEM_ID)))
    cust_missing = _id_missing(raw[C.CUSTOMER_ID], text.get(C.CUSTOMER_ID))
    if not cfg.drop_guests:
        mark("missing_customer_id", cust_missing)
    qty = price = None
    if C.QUANTITY in raw.columns:
        qty, bad = _parse_number(raw[C.QUANTITY], text.get(C.QUANTITY), allow_missing=False)
        mark("bad_quantity", bad)
    if C.PRICE in raw.columns:
        price, bad = _parse_number(raw[C.PRICE], text.get(C.PRICE), allow_missing=True)
        mark("bad_price", bad)
    elif LINE_TOTAL in raw.columns:  # unit price = line total / quantity
        total, bad = _parse_number(raw[LINE_TOTAL], text.get(LINE_TOTAL), allow_missing=True)
        mark("bad_price", bad)
        if qty is None:
            raise SchemaError(f"{source}: a line_total column needs a quantity column to give "
                              "unit prices (map one with --map quantity=COLUMN)")
        with np.errstate(divide="ignore", invalid="ignore"):
            price = np.where(qty != 0, total / qty, np.nan)  # quantity 0: zero_quantity rule

    n_invalid = int(np.count_nonzero(code))
    if strict and n_invalid:
        first = int(np.flatnonzero(code)[0])
        reason = REASONS[code[first] - 1]
        col = _column_of(reason, raw)
        counts = np.bincount(code, minlength=len(REASONS) + 1)
        summary = ", ".join(
            f"{counts[_CODE[r]]} {r}" for r in INVALID_REASONS if counts[_CODE[r]]
        )
        raise ValidationError(
            f"{source}: row {first + 1}, column {col!r}: {_MESSAGE[reason]}: "
            f"{_as_text(raw[col].iloc[first])!r} ({n_invalid} invalid rows: {summary})"
        )

    # --- cleaning rules
    notes = _rule_warnings(cfg, cols, text)
    if cfg.drop_cancellations and cfg.cancel_prefixes and C.ORDER_ID in text:
        d = text[C.ORDER_ID]
        prefixes = tuple(cfg.cancel_prefixes)
        hit = np.fromiter((str(u).startswith(prefixes) for u in d.uniques), bool, len(d.uniques))
        mark("cancellation", d.take(hit, False))
    if qty is not None:
        if cfg.drop_returns:
            mark("return", qty < 0)
        if cfg.drop_zero_quantity:
            mark("zero_quantity", qty == 0)
    if cfg.drop_guests:
        mark("guest", cust_missing)
    if cfg.drop_non_products and (cfg.non_product_codes or cfg.non_product_pattern):
        mark("non_product", _non_products(raw[C.ITEM_ID], text.get(C.ITEM_ID), cfg))
    for reason, col, values in (
        ("excluded_category", C.CATEGORY, cfg.exclude_categories),
        ("excluded_department", "department", cfg.exclude_departments),
    ):
        if values and col in raw.columns:
            d = text.get(col)
            if d is not None:
                hit = np.isin(np.array([str(u) for u in d.uniques], dtype=object),
                              np.array(values, dtype=object))
                mark(reason, d.take(hit, False))
            else:
                mark(reason, raw[col].astype(str).isin(values).to_numpy())
    if price is not None and cfg.drop_nonpositive_price:
        with np.errstate(invalid="ignore"):
            mark("nonpositive_price", price <= 0)
    first_of = None
    if cfg.drop_duplicates:
        keys: dict[str, np.ndarray] = {}
        for c in cols:
            if c == C.TIMESTAMP:  # the time read, not its spelling (ISO and 13/12 alike)
                keys[c] = ts.view(np.int64)
            elif c in text:
                keys[c] = text[c].codes
            elif c == C.QUANTITY:
                keys[c] = qty
            elif c == C.PRICE:
                keys[c] = price
            else:
                keys[c] = _exact_key(raw[c])
        dup, first = _duplicates(keys, np.flatnonzero(code == 0))
        del keys
        code[dup] = _CODE["duplicate"]
        first_of = dict(zip(dup[:N_EXAMPLES].tolist(), first[:N_EXAMPLES].tolist(), strict=True))

    # --- items that look like postage, fees or vouchers (any source)
    suspects = _suspected_non_products(raw, code, text, price)
    if cfg.drop_suspected_non_products and suspects:
        d = text.get(C.ITEM_ID) or _Distinct(raw[C.ITEM_ID])
        ids = np.array([_id_text(u) for u in d.uniques], dtype=object)
        hit = np.isin(ids, np.array([s["item_id"] for s in suspects], dtype=object))
        np.putmask(code, (code == 0) & d.take(hit, False), _CODE["non_product"])
    elif suspects:
        shown = ", ".join(f"{s['item_id']} {s['name']!r} ({s['why']})" for s in suspects[:5])
        notes.append(f"{len(suspects)} item(s) look like postage, fees or vouchers, not products: "
                     f"{shown}; drop them with --drop-suspected-non-products (or list them in "
                     "--non-product-codes)")

    # --- outputs
    keep = code == 0
    rows = np.flatnonzero(keep)
    out: dict[str, Any] = {}
    for col in (C.CUSTOMER_ID, C.ITEM_ID):
        d = text.get(col)
        if d is not None:
            out[col] = _ids_from_distinct(d, rows)
        else:
            out[col] = normalize_ids(pd.Series(raw[col].to_numpy()[keep])).to_numpy()
    t = ts[keep]
    if cfg.day_level:
        t = t.astype("datetime64[D]").astype("datetime64[ns]")
    out[C.TIMESTAMP] = t
    if qty is not None:
        out[C.QUANTITY] = qty[keep]
    if price is not None:
        out[C.PRICE] = price[keep]
    if C.ORDER_ID in raw.columns:
        out[C.ORDER_ID] = _order_ids(raw[C.ORDER_ID], text.get(C.ORDER_ID), rows)
    for col in (C.CATEGORY, C.ITEM_NAME, *(c for c in EXTRA_COLUMNS if c != LINE_TOTAL)):
        if col in raw.columns:
            d = text.get(col) or _Distinct(raw[col])
            per = np.array([u if isinstance(u, str) else str(u) for u in d.uniques], dtype=object)
            out[col] = d.take(per, None, rows)
    purchases = pd.DataFrame(out, copy=False)  # no block consolidation copy

    counts = np.bincount(code, minlength=len(REASONS) + 1)
    rejects = _rejects(raw, code, n_invalid)
    report = _report(raw, code, counts, cfg, source, purchases, first_of)
    report["suspected_non_products"] = suspects
    report["timestamps"] = reading.as_dict() | {"description": reading.describe()}
    report["warnings"] = notes
    return CleanResult(purchases=purchases, rejects=rejects, report=report)


def _check_timestamp_share(raw: pd.DataFrame, code: np.ndarray, missing: np.ndarray,
                           cfg: CleanConfig, source: str, reading: TimestampReading) -> None:
    """A timestamp column mostly unreadable or implausible is read wrong: an error naming
    examples, not rows to reject."""
    n = len(code)
    bad = np.isin(code, (_CODE["bad_timestamp"], _CODE["implausible_timestamp"])) & ~missing
    if not n or not bad.any() or bad.sum() / n <= cfg.max_bad_timestamp_share:
        return
    idx = np.flatnonzero(bad)[:3]
    ex = ", ".join(f"row {i + 1}: {_as_text(raw[C.TIMESTAMP].iloc[i])!r}" for i in idx)
    raise TimestampError(
        f"{source}: column {C.TIMESTAMP!r}: {bad.sum():,} of {n:,} timestamps "
        f"({100 * bad.sum() / n:.0f}%) cannot be read or are implausible (before "
        f"{cfg.min_date} or in the future), e.g. {ex}; read as {reading.describe()}; give "
        "--date-format (e.g. %d/%m/%Y %H:%M) or --dayfirst/--monthfirst"
    )


NON_PRODUCT_NAMES = re.compile(  # the whole name is a fee word (with a usual qualifier)
    r"^\W*((next|same) day|express|standard|priority|international|dotcom|uk|eu|amazon|"
    r"manual)?\s*(postage|post|carriage|shipping|delivery|freight|fees?|surcharge|discount|"
    r"vouchers?|gift ?cards?|coupons?|bank charges?|manual|adjustment|deposit|service charge|"
    r"handling)(\s+(charges?|fees?|costs?))?\W*$",
    re.IGNORECASE)
ORDER_SHARE = 0.2  # an item in at least this share of orders (and 50 orders) is suspect


def _suspected_non_products(raw, code, text, price) -> list[dict]:
    """Items that look like postage, fees or vouchers: their name (or id) says so, they are in
    an unusually large share of orders, or they have zero/negative prices. Kept lines only;
    at most 20, most lines first."""
    kept = code == 0
    d = text.get(C.ITEM_ID) or _Distinct(raw[C.ITEM_ID])
    n_items = len(d.uniques)
    if not kept.any() or n_items == 0:
        return []
    codes = d.codes
    lines = np.bincount(codes[kept & (codes >= 0)], minlength=n_items)
    why: dict[int, list[str]] = {}
    names = None
    if C.ITEM_NAME in raw.columns:
        dn = text.get(C.ITEM_NAME) or _Distinct(raw[C.ITEM_NAME])
        first = np.full(n_items, -1, dtype=np.int64)
        rows = np.flatnonzero(kept & (codes >= 0))
        first[codes[rows[::-1]]] = rows[::-1]  # the first kept line of each item
        name_codes = np.where(first >= 0, dn.codes[np.maximum(first, 0)], -1)
        names = [str(dn.uniques[c]) if c >= 0 else "" for c in name_codes]
    for i in np.flatnonzero(lines):
        label = (names[i] if names else "") or _id_text(d.uniques[i])
        if NON_PRODUCT_NAMES.match(label) or NON_PRODUCT_NAMES.match(_id_text(d.uniques[i])):
            why.setdefault(int(i), []).append("name")
    if C.ORDER_ID in raw.columns:
        od = text.get(C.ORDER_ID) or _Distinct(raw[C.ORDER_ID])
        ok = kept & (codes >= 0) & (od.codes >= 0)
        n_orders = len(np.unique(od.codes[ok]))
        top = np.argsort(-lines)[:20]
        for i in top[lines[top] > 0]:
            mine = ok & (codes == i)
            share = len(np.unique(od.codes[mine])) / max(n_orders, 1)
            if n_orders >= 50 and share >= ORDER_SHARE:
                why.setdefault(int(i), []).append(f"in {100 * share:.0f}% of orders")
    if price is not None:  # mostly priced at zero or below: a fee, a refund, a free sample
        with np.errstate(invalid="ignore"):
            bad = (price <= 0) & (codes >= 0)
        n_bad = np.bincount(codes[bad], minlength=n_items)
        n_all = np.bincount(codes[codes >= 0], minlength=n_items)
        for i in np.flatnonzero((n_bad * 2 >= n_all) & (n_all >= 10) & (lines > 0)):
            why.setdefault(int(i), []).append("mostly zero or negative prices")
    out = [{"item_id": _id_text(d.uniques[i]), "name": names[i] if names else None,
            "why": ", ".join(w), "lines": int(lines[i])} for i, w in why.items()]
    return sorted(out, key=lambda s: -s["lines"])[:20]


def _rule_warnings(cfg: CleanConfig, cols: list[str], text: dict) -> list[str]:
    """Rules that are set but cannot apply to this log (their column is absent)."""
    notes = []
    for values, col, name in (
        (cfg.exclude_categories, C.CATEGORY, "exclude_categories"),
        (cfg.exclude_departments, "department", "exclude_departments"),
        (cfg.drop_cancellations and cfg.cancel_prefixes, C.ORDER_ID, "cancel_prefixes"),
    ):
        if values and col not in cols:
            notes.append(f"{name} is set but the log has no {col!r} column")
        elif name == "cancel_prefixes" and values and col not in text:
            notes.append(f"cancel_prefixes is set but {col!r} is numeric: no prefix can match")
    if C.QUANTITY not in cols:
        notes.append("no 'quantity' column: returns and zero quantities cannot be detected")
    return notes


def _non_products(item: pd.Series, d: _Distinct | None, cfg: CleanConfig) -> np.ndarray:
    """Rows whose item id is a listed non-product code or matches the pattern."""
    rx = re.compile(cfg.non_product_pattern) if cfg.non_product_pattern else None
    codes = set(cfg.non_product_codes)
    if d is None:  # numeric ids: compare their text form on the distinct values
        d = _Distinct(item)
        as_text = [str(int(u)) if float(u).is_integer() else str(u) for u in d.uniques]
    else:
        as_text = [str(u) for u in d.uniques]
    hit = np.fromiter(
        ((t in codes) or (rx is not None and rx.fullmatch(t) is not None) for t in as_text),
        bool, len(as_text),
    )
    return d.take(hit, False)


def _order_ids(s: pd.Series, d: _Distinct | None, rows: np.ndarray) -> np.ndarray:
    """Order ids of ``rows`` as given: int64 for an integer column, text stays text (None
    if missing)."""
    if d is None and s.dtype.kind in "iub":
        return s.to_numpy()[rows].astype(np.int64, copy=False)
    if d is None:
        d = _Distinct(s)
    if (d.codes[rows] >= 0).all():
        return _ids_from_distinct(d, rows)
    per = np.array([u if isinstance(u, str) else str(u) for u in d.uniques], dtype=object)
    return d.take(per, None, rows)


def _rejects(raw: pd.DataFrame, code: np.ndarray, n_invalid: int) -> pd.DataFrame:
    invalid_codes = [_CODE[r] for r in INVALID_REASONS]
    idx = np.flatnonzero(np.isin(code, invalid_codes)) if n_invalid else np.zeros(0, np.int64)
    reasons = np.array(REASONS, dtype=object)[code[idx] - 1] if len(idx) else np.array([], object)
    cols = np.array([_column_of(r, raw) for r in reasons], dtype=object)
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


def _nunique(v: np.ndarray) -> int:
    """Distinct values; int ids in a compact range are counted with a bitmap (no hashing)."""
    if v.dtype.kind in "iu" and len(v):
        lo, hi = int(v.min()), int(v.max())
        if hi - lo < 8 * len(v) + 1024:
            seen = np.zeros(hi - lo + 1, dtype=bool)
            seen[v - lo] = True
            return int(np.count_nonzero(seen))
    return int(pd.Series(v).nunique())


def _report(
    raw: pd.DataFrame,
    code: np.ndarray,
    counts: np.ndarray,
    cfg: CleanConfig,
    source: str,
    purchases: pd.DataFrame,
    first_of: dict[int, int] | None,
) -> dict[str, Any]:
    dropped = {r: int(counts[_CODE[r]]) for r in REASONS}
    examples: dict[str, list[dict[str, Any]]] = {}
    for r in REASONS:
        if not dropped[r]:
            continue
        idx = np.flatnonzero(code == _CODE[r])[:N_EXAMPLES]
        col = _column_of(r, raw)
        ex = []
        for i in idx:
            if col is None:  # duplicate
                value = f"duplicate of row {first_of[int(i)] + 1}" if first_of else None
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
        "customers": _nunique(purchases[C.CUSTOMER_ID].to_numpy()),
        "items": _nunique(purchases[C.ITEM_ID].to_numpy()),
        "orders": _nunique(purchases[C.ORDER_ID].to_numpy()) if C.ORDER_ID in purchases else None,
        "time_range": [str(ts.min()), str(ts.max())] if len(ts) else None,
        "columns": list(purchases.columns),
        "config": cfg.model_dump(),
    }
    if report["rows_in"] != report["rows_kept"] + sum(dropped.values()):  # pragma: no cover
        raise SchemaError(f"{source}: row accounting broken (internal error)")
    return report
