"""NES lifecycle stages from each customer's purchase cycle.

The purchase cycle is the gap in days between a customer's distinct purchase days. A customer
with at least ``NESConfig.min_purchases`` purchase days gets their own cycle (the median of
their gaps); everyone else, including customers with a single purchase, is staged against the
shop-wide cycle (``cycle_source`` says which, ``cycle_note`` says why). The shop cycle is, by
default, the median over customers of each customer's median gap.

The data are observed up to the day before the reference date. With ``t`` = idle days, the days
from the last purchase day to that last observed day (``recency - 1``: a purchase on the last
observed day gives 0), ``a`` = the days from the first purchase day to the last observed day,
and ``c`` = the cycle used:

* ``N``  new: ``a <= new_cycles * c`` (first purchase within the last cycle)
* ``E0`` active: ``t <= active_cycles * c``
* ``S1`` dozing: ``t <= dozing_cycles * c``
* ``S2`` half-asleep: ``t <= half_asleep_cycles * c``
* ``S3`` sleeping / lost: beyond that
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import columns as C
from features.customers.config import NESConfig
from features.customers.prep import DAY, prepare
from features.errors import PatronError

NES_STAGE, NES_LABEL = "nes_stage", "nes_label"
PURCHASE_DAYS = "purchase_days"
OWN_CYCLE, CYCLE, CYCLE_SOURCE, CYCLE_NOTE = "own_cycle_days", "cycle_days", "cycle_source", "cycle_note"
IDLE_DAYS, IDLE_CYCLES = "idle_days", "idle_cycles"
NES_STAGES = ["N", "E0", "S1", "S2", "S3"]
NES_LABELS = {
    "N": "new", "E0": "active", "S1": "dozing", "S2": "half-asleep", "S3": "sleeping/lost",
}


def customer_gaps(lines: pd.DataFrame) -> pd.DataFrame:
    """Distinct purchase days per customer with ``gap`` = days since their previous one (NaN first)."""
    days = lines[[C.CUSTOMER_ID, DAY]].drop_duplicates().sort_values([C.CUSTOMER_ID, DAY])
    days["gap"] = days.groupby(C.CUSTOMER_ID, sort=False)[DAY].diff().dt.days
    return days


def purchase_cycles(
    lines: pd.DataFrame, config: NESConfig | None = None
) -> tuple[pd.DataFrame, float]:
    """Per-customer purchase days and cycles, and the shop-wide cycle (days)."""
    config = config or NESConfig()
    days = customer_gaps(lines)
    g = days.groupby(C.CUSTOMER_ID, sort=True)
    out = pd.DataFrame({PURCHASE_DAYS: g.size().astype(np.int64), "median_gap": g["gap"].median()})
    if config.cycle_days is not None:
        shop = float(config.cycle_days)
    elif not out["median_gap"].notna().any():
        shop = float("nan")
    elif config.shop_cycle == "pooled_median":
        shop = float(days["gap"].median())
    else:
        shop = float(out["median_gap"].median())
    if not np.isfinite(shop):
        raise PatronError(
            "no customer bought on two different days, so there is no purchase cycle to stage "
            "customers against: set NESConfig.cycle_days"
        )
    own = out[PURCHASE_DAYS] >= config.min_purchases
    out[OWN_CYCLE] = out["median_gap"].where(own)
    out[CYCLE] = out[OWN_CYCLE].fillna(shop)
    out[CYCLE_SOURCE] = np.where(own, "own", "shop")
    note = np.where(
        out[PURCHASE_DAYS] == 1,
        "one purchase day: no cycle of their own, shop cycle used",
        f"fewer than {config.min_purchases} purchase days: shop cycle used",
    )
    out[CYCLE_NOTE] = np.where(own, "", note)
    return out.drop(columns="median_gap"), shop


def nes_stages(
    purchases: pd.DataFrame,
    reference_date: object = None,
    config: NESConfig | None = None,
    *,
    prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None,
) -> tuple[pd.DataFrame, float]:
    """NES stage per customer (indexed by id) and the shop-wide cycle in days."""
    config = config or NESConfig()
    lines, ref = prepared if prepared is not None else prepare(purchases, reference_date, warn=False)
    cycles, shop = purchase_cycles(lines, config)
    g = lines.groupby(C.CUSTOMER_ID, sort=True)[DAY]
    last_seen = ref - pd.Timedelta(days=1)
    idle = (last_seen - g.max()).dt.days.to_numpy().astype(float)
    age = (last_seen - g.min()).dt.days.to_numpy().astype(float)
    c = cycles[CYCLE].to_numpy()
    stage = np.select(
        [
            age <= config.new_cycles * c,
            idle <= config.active_cycles * c,
            idle <= config.dozing_cycles * c,
            idle <= config.half_asleep_cycles * c,
        ],
        ["N", "E0", "S1", "S2"],
        default="S3",
    )
    cycles[NES_STAGE] = stage
    cycles[NES_LABEL] = pd.Series(stage).map(NES_LABELS).to_numpy()
    cycles[IDLE_DAYS] = idle.astype(np.int64)
    cycles[IDLE_CYCLES] = idle / c
    return cycles, shop


__all__ = [
    "NES_STAGE", "NES_LABEL", "PURCHASE_DAYS", "OWN_CYCLE", "CYCLE", "CYCLE_SOURCE", "CYCLE_NOTE",
    "IDLE_DAYS", "IDLE_CYCLES", "NES_STAGES", "NES_LABELS", "customer_gaps", "purchase_cycles", "nes_stages",
]
