"""One call for all customer tables, per-segment summaries, save/load, and ``customer_profile``.

:func:`build_customer_tables` computes everything from a clean purchase log as of one reference
date; the tables are plain DataFrames (serving can precompute them at training time, store them
with :func:`save_tables` beside the model and answer :func:`customer_profile` from them).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import columns as C
from features.customers.config import CustomerConfig
from features.customers.nes import (
    CYCLE,
    NES_LABELS,
    NES_STAGE,
    NES_STAGES,
    PURCHASE_DAYS,
    nes_stages,
)
from features.customers.prep import CustomerDataWarning, prepare
from features.customers.reminders import REMINDER_RANK, due_reminders
from features.customers.repurchase import repurchase_intervals
from features.customers.rfm import (
    FREQUENCY,
    MONETARY,
    NAMED_SEGMENT,
    NAMED_SEGMENTS,
    VALUE_SEGMENT,
    VALUE_SEGMENT_ORDER,
    VALUE_SEGMENT_ZH_OF,
    rfm_table,
)
from features.customers.winback import winback_list
from features.errors import PatronError

AVG_ORDER_VALUE = "avg_order_value"
TABLE_FILES = ("customers", "reminders", "winback", "offers")


@dataclass
class CustomerTables:
    """The customer analytics of one purchase log as of ``reference_date``."""

    customers: pd.DataFrame
    """One row per customer (column customer_id): RFM, segments, NES stage, cycle."""
    reminders: pd.DataFrame
    """Items due within the horizon per customer (see :mod:`features.customers.reminders`)."""
    winback: pd.DataFrame
    """S1/S2 customers by past value with their offer (see :mod:`features.customers.winback`)."""
    offers: pd.DataFrame
    """Long form of the win-back offers: customer_id, item_id, offer_rank, source."""
    reference_date: pd.Timestamp
    shop_cycle_days: float
    notes: list[str] = field(default_factory=list)


def build_customer_tables(
    purchases: pd.DataFrame,
    reference_date: object = None,
    config: CustomerConfig | None = None,
    recs: pd.DataFrame | None = None,
) -> CustomerTables:
    """RFM + segments + NES + reminders + win-back list from a clean purchase log."""
    config = config or CustomerConfig()
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CustomerDataWarning)
        prepared = prepare(purchases, reference_date)
    for w in caught:
        notes.append(str(w.message))
        warnings.warn(w.message, stacklevel=2)
    lines, ref = prepared
    rfm = rfm_table(purchases, config=config.rfm, prepared=prepared)
    nes, shop = nes_stages(purchases, config=config.nes, prepared=prepared)
    customers = rfm.join(nes)
    customers[AVG_ORDER_VALUE] = customers[MONETARY] / customers[FREQUENCY].where(
        customers[FREQUENCY] > 0
    )
    one = int((customers[PURCHASE_DAYS] == 1).sum())
    if one:
        notes.append(
            f"{one} of {len(customers)} customers bought on one day only: no cycle of their own "
            f"(own_cycle_days NaN, cycle_note says so), staged against the shop cycle {shop:g} days"
        )
    intervals = repurchase_intervals(purchases, C.ITEM_ID, config.repurchase, prepared=prepared)
    rem = due_reminders(intervals, ref, config.reminders)
    winback, offers = winback_list(customers, lines, recs)
    return CustomerTables(
        customers=customers.reset_index(),
        reminders=rem,
        winback=winback.reset_index(),
        offers=offers,
        reference_date=ref,
        shop_cycle_days=shop,
        notes=notes,
    )


def summarize(customers: pd.DataFrame, by: str) -> pd.DataFrame:
    """Customers, customer share, revenue, revenue share and average order value per ``by``."""
    g = customers.groupby(by, sort=False, observed=True)
    out = pd.DataFrame(
        {
            "customers": g.size(),
            "revenue": g[MONETARY].sum(),
            "orders": g[FREQUENCY].sum(),
        }
    )
    out["customer_share"] = out["customers"] / out["customers"].sum()
    out["revenue_share"] = out["revenue"] / out["revenue"].sum() if out["revenue"].sum() else np.nan
    out[AVG_ORDER_VALUE] = out["revenue"] / out["orders"].where(out["orders"] > 0)
    order = {
        VALUE_SEGMENT: VALUE_SEGMENT_ORDER, NAMED_SEGMENT: NAMED_SEGMENTS, NES_STAGE: NES_STAGES,
    }.get(by)
    if order is not None:
        out = out.reindex([k for k in order if k in out.index])
    if by == VALUE_SEGMENT:
        out.insert(0, "zh", [VALUE_SEGMENT_ZH_OF[k] for k in out.index])
    if by == NES_STAGE:
        out.insert(0, "label", [NES_LABELS[k] for k in out.index])
    out.index.name = by
    return out[[c for c in out.columns if c != "orders"]]


MONEY = ("monetary", "avg_order_value", "revenue", "spend", "price")
ITEM_LISTS = ("favourite_items", "recommended_items")


def readable(frame: pd.DataFrame, items: pd.DataFrame | None = None,
             currency: str | None = None) -> pd.DataFrame:
    """A table as a marketer reads it: item names (and typical prices) beside item ids and
    item lists, numbers rounded (2 decimals, days 1), money columns headed with ``currency``.
    ``items``: item_id, item_name (and price), e.g. from :func:`item_names`."""
    out = frame.copy()
    if items is not None and len(items):
        names = dict(zip(items[C.ITEM_ID].astype(str), items.get(C.ITEM_NAME, items[C.ITEM_ID]).astype(str),
                         strict=True))
        if C.ITEM_ID in out.columns:
            pos = out.columns.get_loc(C.ITEM_ID) + 1
            out.insert(pos, C.ITEM_NAME, out[C.ITEM_ID].astype(str).map(names))
            if "price" in items.columns and "price" not in out.columns:
                prices = dict(zip(items[C.ITEM_ID].astype(str), items["price"], strict=True))
                out.insert(pos + 1, "price", out[C.ITEM_ID].astype(str).map(prices))
        for col in ITEM_LISTS:
            if col in out.columns:
                out[col.replace("_items", "_names")] = out[col].map(
                    lambda v: "; ".join(names.get(x.strip(), x.strip()) for x in str(v).split(";"))
                    if isinstance(v, str) and v else v)
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].round(1 if col.endswith("days") or col in ("interval",) else 2)
    if currency:
        out = out.rename(columns={c: f"{c} ({currency})" for c in out.columns if c in MONEY})
    return out


def item_names(purchases: pd.DataFrame) -> pd.DataFrame | None:
    """item_id, item_name (first seen) and median unit price of a purchase log."""
    if C.ITEM_NAME not in purchases.columns and C.PRICE not in purchases.columns:
        return None
    agg = {}
    if C.ITEM_NAME in purchases.columns:
        agg[C.ITEM_NAME] = (C.ITEM_NAME, "first")
    if C.PRICE in purchases.columns:
        agg["price"] = (C.PRICE, "median")
    return purchases.groupby(C.ITEM_ID, sort=False).agg(**agg).reset_index()


def save_tables(tables: CustomerTables, directory: str | Path, items: pd.DataFrame | None = None,
                currency: str | None = None) -> list[Path]:
    """Write each table as Parquet (as computed) and CSV (UTF-8 with BOM, so spreadsheets show
    the Chinese; as a marketer reads it: :func:`readable`) plus ``customers_meta.json``;
    return the paths written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in TABLE_FILES:
        frame: pd.DataFrame = getattr(tables, name)
        frame.to_parquet(d / f"{name}.parquet", index=False)
        readable(frame, items, currency).to_csv(d / f"{name}.csv", index=False, encoding="utf-8-sig")
        paths += [d / f"{name}.parquet", d / f"{name}.csv"]
    meta = {
        "reference_date": str(tables.reference_date.date()),
        "shop_cycle_days": tables.shop_cycle_days,
        "notes": tables.notes,
    }
    (d / "customers_meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return paths + [d / "customers_meta.json"]


def load_tables(directory: str | Path) -> CustomerTables:
    """Read tables written by :func:`save_tables`."""
    d = Path(directory)
    meta_path = d / "customers_meta.json"
    if not meta_path.exists():
        raise PatronError(f"{meta_path} not found: not a customer-tables directory")
    meta = json.loads(meta_path.read_text())
    frames = {name: pd.read_parquet(d / f"{name}.parquet") for name in TABLE_FILES}
    return CustomerTables(
        **frames,
        reference_date=pd.Timestamp(meta["reference_date"]),
        shop_cycle_days=float(meta["shop_cycle_days"]),
        notes=list(meta.get("notes", [])),
    )


def _plain(v: Any) -> Any:
    """JSON-safe python value: numpy scalars unwrapped, NaN/NaT -> None, dates as ISO strings."""
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.date().isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT:
        return None
    return v


def _match(frame: pd.DataFrame, customer_id: Any) -> np.ndarray:
    col = frame[C.CUSTOMER_ID]
    mask = (col == customer_id).to_numpy()
    if not mask.any() and isinstance(customer_id, str) and pd.api.types.is_integer_dtype(col):
        if customer_id.strip().lstrip("-").isdigit():
            mask = (col == int(customer_id)).to_numpy()
    elif not mask.any() and not isinstance(customer_id, str):
        mask = (col.astype(str) == str(customer_id)).to_numpy()
    return mask


def customer_profile(
    customer_id: Any,
    customers: pd.DataFrame,
    reminders: pd.DataFrame | None = None,
    max_items: int = 10,
) -> dict[str, Any]:
    """A JSON-safe profile of one customer from the precomputed tables.

    Returns ``{"customer_id", "known": False}`` for a customer not in ``customers``; else RFM
    values/scores/code, value segment (EN + ZH), named segment, NES stage and cycle, and up to
    ``max_items`` items due for replenishment (best first). String ids match integer id columns.
    """
    mask = _match(customers, customer_id)
    if not mask.any():
        return {"customer_id": customer_id, "known": False}
    row = customers.loc[mask].iloc[0]
    get = lambda c: _plain(row[c]) if c in row.index else None  # noqa: E731
    profile: dict[str, Any] = {
        "customer_id": get(C.CUSTOMER_ID),
        "known": True,
        "first_purchase": get("first_purchase"),
        "last_purchase": get("last_purchase"),
        "rfm": {k: get(k) for k in ("recency", "frequency", "monetary", "r_score", "f_score",
                                    "m_score", "rfm_code")},
        "value_segment": get(VALUE_SEGMENT),
        "value_segment_zh": get("value_segment_zh"),
        "segment": get(NAMED_SEGMENT),
        "nes": {
            "stage": get(NES_STAGE), "label": get("nes_label"), "cycle_days": get(CYCLE),
            "cycle_source": get("cycle_source"), "cycle_note": get("cycle_note") or None,
            "idle_days": get("idle_days"), "idle_cycles": get("idle_cycles"),
        },
        "due_items": [],
    }
    if reminders is not None and len(reminders):
        due = reminders.loc[_match(reminders, customer_id)]
        if REMINDER_RANK in due.columns:
            due = due.sort_values(REMINDER_RANK, kind="stable")
        due = due.head(max_items)
        profile["due_items"] = [
            {
                "item_id": _plain(r[C.ITEM_ID]),
                "expected_next": _plain(pd.Timestamp(r["expected_next"])),
                "days_overdue": _plain(r["days_overdue"]),
                "interval_days": _plain(r["interval"]),
                "score": _plain(r[C.SCORE]),
            }
            for r in due.to_dict("records")
        ]
    return profile


__all__ = [
    "AVG_ORDER_VALUE", "CustomerTables", "build_customer_tables", "summarize", "save_tables",
    "load_tables", "customer_profile",
]
