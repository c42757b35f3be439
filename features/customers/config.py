"""Settings of the customer analytics (pydantic, ``extra="forbid"``, JSON round-trippable)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RFMConfig(_Config):
    """RFM: which purchases count towards Frequency and Monetary."""

    window_days: int | None = Field(None, ge=1)
    """Count F and M only over the last ``window_days`` before the reference date (None: all
    history). Recency always looks at the whole history."""


class NESConfig(_Config):
    """NES lifecycle stages, in multiples of a purchase cycle (days between purchase days).

    With ``t`` = idle days (from the last purchase day to the last observed day, the day before
    the reference date) and ``c`` = the customer's cycle: ``N`` new (first purchase at most
    ``new_cycles * c`` days before the last observed day), else ``E0`` active
    (``t <= active_cycles * c``), ``S1`` dozing (``<= dozing_cycles * c``), ``S2`` half-asleep
    (``<= half_asleep_cycles * c``), ``S3`` sleeping/lost (beyond).
    """

    cycle_days: float | None = Field(None, gt=0)
    """Fixed shop-wide cycle in days; None derives it from the data (``shop_cycle``)."""
    shop_cycle: Literal["customer_median", "pooled_median"] = "customer_median"
    """How the shop-wide cycle is derived: the median over customers of each customer's median
    gap (each customer counts once), or the median of all gaps pooled (heavy buyers weigh more)."""
    min_purchases: int = Field(4, ge=2)
    """Distinct purchase days a customer needs for a cycle of their own (else the shop cycle)."""
    new_cycles: float = Field(1.0, gt=0)
    active_cycles: float = Field(1.0, gt=0)
    dozing_cycles: float = Field(2.0, gt=0)
    half_asleep_cycles: float = Field(3.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> NESConfig:
        if not self.active_cycles < self.dozing_cycles < self.half_asleep_cycles:
            raise ValueError(
                "NESConfig needs active_cycles < dozing_cycles < half_asleep_cycles, got "
                f"{self.active_cycles}, {self.dozing_cycles}, {self.half_asleep_cycles}"
            )
        return self


class RepurchaseConfig(_Config):
    """Repurchase intervals per customer and item (or category)."""

    min_repeats: int = Field(2, ge=1)
    """Repeats (gaps between distinct purchase days) a customer needs for an interval of their
    own; with fewer, the item's population median is used."""


class ReminderConfig(_Config):
    """Replenishment reminders: which customer-item pairs are due within the horizon."""

    horizon_days: int = Field(14, ge=1)
    """Remind about items expected within this many days from the cutoff."""
    min_purchases: int = Field(2, ge=2)
    """Distinct purchase days of the item a customer needs before it is reminded."""
    max_lapsed_cycles: float = Field(3.0, gt=0)
    """No reminder when more than this many intervals have passed (the customer stopped)."""
    max_per_customer: int | None = Field(None, ge=1)
    """Keep only the best-scored reminders per customer (None: all due)."""


class CustomerConfig(_Config):
    """All customer-analytics settings."""

    rfm: RFMConfig = RFMConfig()
    nes: NESConfig = NESConfig()
    repurchase: RepurchaseConfig = RepurchaseConfig()
    reminders: ReminderConfig = ReminderConfig()


__all__ = ["RFMConfig", "NESConfig", "RepurchaseConfig", "ReminderConfig", "CustomerConfig"]
