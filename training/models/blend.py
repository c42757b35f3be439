"""Repeat + CF blend: a customer's own repeat candidates mixed with ALS candidates.

Artifact kind ``blend`` (see :mod:`features.scoring`): ALS factors plus ``item_scores``
(distinct buyers per item, the tie-break among own-history items). Each component is
scaled to [0, 1] per customer and mixed as ``(1 - blend_weight) * als + blend_weight * own``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from features.interactions import InteractionMatrix
from training.models.als import ALSConfig, fit_implicit_als
from training.models.base import FitCallback, Recommender

__all__ = ["BlendConfig", "BlendRecommender", "buyer_counts"]


class BlendConfig(ALSConfig):
    """ALS settings plus the weight of the customer's own history."""

    blend_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="weight of own repeat history (0 = pure ALS, 1 = pure repeat)"
    )


def buyer_counts(data: InteractionMatrix) -> np.ndarray:
    """Distinct customers per item, float32."""
    return np.diff(data.matrix.tocsc().indptr).astype(np.float32)


class BlendRecommender(Recommender):
    """Own repeat purchases blended with ALS recommendations."""

    name = "blend"
    kind = "blend"
    Config = BlendConfig
    supports_epoch_callback = True
    artifact_params = {"cf_kind": "factors", "fold_in": "als"}

    def _fit(self, data: InteractionMatrix, callback: FitCallback | None) -> dict[str, Any]:
        cfg = self.config
        als_cfg = ALSConfig(**{k: v for k, v in cfg.model_dump().items() if k in ALSConfig.model_fields})
        pop = buyer_counts(data)
        model = fit_implicit_als(data, als_cfg, self.options, callback, {"item_scores": pop})
        return {
            "user_factors": np.ascontiguousarray(model.user_factors, dtype=np.float32),
            "item_factors": np.ascontiguousarray(model.item_factors, dtype=np.float32),
            "item_scores": pop,
        }
