"""Non-personalised and own-history baselines every model must beat.

* :class:`PopularityModel` (``popularity``): items ranked by the number of distinct
  training customers who bought them.
* :class:`RecentPopularityModel` (``recent_popularity``): distinct customers in the last
  ``days`` days of the training period (ties broken by overall popularity). The
  interaction matrix carries no timestamps, so pass the training purchases:
  ``model.fit(matrix, purchases=train)`` (``training.evaluate.fit_model`` does this for
  any model whose class sets ``needs_purchases``). Without purchases it falls back to the
  column sums of a time-decayed matrix (built with ``MatrixConfig(half_life_days=...)``)
  and otherwise raises :class:`~features.errors.PatronError`.
* :class:`RepeatBuyModel` (``repeat_buy``): the customer's own purchase history as
  weighted in the matrix (the default ``log1p`` weighting ranks by purchase count; a
  ``half_life_days`` matrix adds recency), popularity breaking ties and filling the list.
  With already-bought items filtered it degrades to popularity.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from features import columns as C
from features.errors import PatronError
from features.interactions import InteractionMatrix
from training.models.base import FitCallback, ModelConfig, Recommender

__all__ = [
    "PopularityConfig",
    "PopularityModel",
    "RecentPopularityConfig",
    "RecentPopularityModel",
    "RepeatBuyConfig",
    "RepeatBuyModel",
    "customer_popularity",
]


def customer_popularity(data: InteractionMatrix) -> np.ndarray:
    """Distinct customers per item (float32), from the matrix's nonzero pattern."""
    m = data.matrix
    return np.bincount(m.indices[m.data > 0], minlength=data.n_items).astype(np.float32)


def _tie_break(pop: np.ndarray) -> np.ndarray:
    """Popularity squeezed into [0, 1): added to integer counts it only breaks ties."""
    top = float(pop.max(initial=0.0))
    return (pop / (top + 1.0)).astype(np.float32)


class PopularityConfig(ModelConfig):
    """Global popularity has no settings."""


class PopularityModel(Recommender):
    """Most popular items by distinct training customers, the same list for everyone."""

    name: ClassVar[str] = "popularity"
    Config: ClassVar[type[ModelConfig]] = PopularityConfig
    kind: ClassVar[str] = "popularity"

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        return {"item_scores": customer_popularity(data)}


class RecentPopularityConfig(ModelConfig):
    """Popularity over the most recent days of the training period."""

    days: int = Field(28, ge=1, le=3650, description="window length in calendar days, "
                      "ending on the last training purchase day")


class RecentPopularityModel(Recommender):
    """Distinct customers per item in the last ``days`` days of training (see module doc)."""

    name: ClassVar[str] = "recent_popularity"
    Config: ClassVar[type[ModelConfig]] = RecentPopularityConfig
    kind: ClassVar[str] = "popularity"
    needs_purchases: ClassVar[bool] = True

    def fit(
        self,
        data: InteractionMatrix,
        callback: FitCallback | None = None,
        *,
        purchases: pd.DataFrame | None = None,
    ) -> RecentPopularityModel:
        """Fit on ``data``; ``purchases`` (the training log) supplies the timestamps."""
        self._purchases = purchases
        try:
            return super().fit(data, callback)
        finally:
            self._purchases = None

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        pop = customer_popularity(data)
        purchases = getattr(self, "_purchases", None)
        if purchases is not None:
            recent, ref = self.recent_counts(purchases, data, self.config.days)
            return {
                "item_scores": recent + _tie_break(pop),
                "_params": {"recent_source": "purchases", "reference_day": str(ref.date())},
            }
        if data.weighting.get("half_life_days"):
            decayed = np.asarray(data.matrix.sum(axis=0), dtype=np.float32).ravel()
            return {"item_scores": decayed, "_params": {"recent_source": "decayed_matrix"}}
        raise PatronError(
            "recent_popularity needs purchase timestamps: fit(matrix, purchases=train) "
            "(training.evaluate.fit_model does it), or build the matrix with half_life_days"
        )

    @staticmethod
    def recent_counts(
        purchases: pd.DataFrame, data: InteractionMatrix, days: int
    ) -> tuple[np.ndarray, pd.Timestamp]:
        """Distinct customers per matrix item in the ``days`` calendar days ending on the
        last purchase day of ``purchases``; items outside the matrix are ignored."""
        for col in (C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP):
            if col not in purchases.columns:
                raise PatronError(f"recent_popularity: purchases lack column {col!r}")
        ts = purchases[C.TIMESTAMP]
        ref = ts.max().normalize()
        start = ref + pd.Timedelta(days=1) - pd.Timedelta(days=int(days))
        recent = purchases.loc[(ts >= start).to_numpy(), [C.CUSTOMER_ID, C.ITEM_ID]]
        recent = recent.drop_duplicates()
        idx = data.items.index_of(recent[C.ITEM_ID].to_numpy(), missing="ignore")
        counts = np.bincount(idx[idx >= 0], minlength=data.n_items).astype(np.float32)
        return counts, ref


class RepeatBuyConfig(ModelConfig):
    """Own-history baseline has no settings (weighting comes from the matrix)."""


class RepeatBuyModel(Recommender):
    """The customer's own most-bought items first, popularity breaking ties."""

    name: ClassVar[str] = "repeat_buy"
    Config: ClassVar[type[ModelConfig]] = RepeatBuyConfig
    kind: ClassVar[str] = "repeat"

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        return {"item_scores": customer_popularity(data)}
